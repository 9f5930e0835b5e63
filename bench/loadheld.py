#!/usr/bin/env python3
"""Issue 14, "load held": 100 passthrough publishers plus 5,000 blocking LL-HLS clients for
30 minutes, with zero errors, RSS drift <= 2 % after warm-up and flat fds; nginx-rtmp under the
same publishers and as many plain-HLS clients, in the same session.

Per side, a fresh server:
  * Pulse Edge: N streams on the `passthrough` profile (common.py raises the per-address caps, as
    an operator behind a CDN would: every client here is 127.0.0.1), N ffmpeg publishers of
    fanin.py's 720p30 3 Mbit/s source (`-re -stream_loop -1 -c copy`); once every stream's media
    playlists list parts, C players (bench/llhls_players.rs) spread evenly over the N video media
    playlists (signed URLs with their token), each on one keep-alive connection chaining blocking
    reloads (`_HLS_msn`/`_HLS_part` for the preload-hinted part) and checking each answer lists
    the part it asked for.
  * nginx-rtmp (nginx/rtmp-baseline/passthrough.conf.template, with worker_connections raised so
    that C viewers fit; nothing else changed): the same N publishers, the same C clients in
    `--plain` mode (plain HLS has no blocking reload: each client reloads its playlist every
    second, as hls.js does for 2 s fragments, and checks for a 200 listing a segment).
Players do not fetch media: media fan-out is the CDN tier's work; the edge's per-viewer work is
the (blocking) playlist.

Every 10 s: RSS of the server's process tree, its open fds (/proc/PID/fd of every process in the
tree), its CPU, and the publishers still alive. Warm-up: the first --warmup-minutes of the players'
run. RSS drift = last sample vs the first sample after warm-up (peak vs that one too); fds: min and
max after warm-up, and "flat" = the median of the last third of those samples is at most
max(16, 1 %) above the median of the first third (files a server opens and closes all the time
move single samples, a leak moves the median). At the end: every publisher alive, and every stream live (Pulse:
each media playlist's newest media, PROGRAM-DATE-TIME plus the parts after it, within 5 s of the
wall clock; nginx: the newest fragment advanced by the run's length, less 1.5 s and one fragment).
The players' own errors (connect, status, timeout, playlist, protocol) and clean reconnects (the
server ended an idle keep-alive connection between responses: nginx does after 1,000 requests) are
counted by the players; see bench/llhls_players.rs.

Sides: Pulse then nginx; with --repeats, the order alternates. The verdict against the targets is
printed; the exit status is non-zero only when a run could not be done.

Usage: python3 bench/loadheld.py [--minutes 30] [--warmup-minutes 5] [--clients 5000]
                                 [--publishers 100] [--repeats 1] [--no-nginx] [--no-pulse] [--quick]
Needs: target/release/pulse-edge, cargo, ffmpeg, nginx with libnginx-mod-rtmp.  Prints a Markdown block.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import fanin  # noqa: E402
from common import Nginx, PulseServer, process_tree, settle, tree_sample  # noqa: E402

SAMPLE_EVERY_S = 10.0
RSS_DRIFT_TARGET_PCT = 2.0
LIVE_WITHIN_S = 5.0
PARTS_TIMEOUT_S = 90.0
NGINX_WORKER_CONNECTIONS = 16384
# "Flat" fds: the median of the last third of the samples after warm-up exceeds that of the first
# third by at most this many (or this share). Medians, because a server opens and closes files all
# the time (nginx opens the playlist for every request): a leak moves the median, churn does not.
FDS_SLACK = 16
FDS_SLACK_PCT = 1.0
PLAIN_RELOAD_MS = 1000
TIMEOUT_S = 10


# ---- sampling ---------------------------------------------------------------------------------

def open_fds(root):
    total = 0
    for pid, _ in process_tree(root):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue  # exited between the listing and the read
    return total


def cpu_of(pid):
    try:
        return common.cpu_seconds(pid)
    except OSError:
        return 0.0  # exited


def sample(root, pubs, players_pid, t):
    tree = tree_sample(root)
    return {"t": t, "rss": sum(rss for _, rss, _ in tree.values()), "fds": open_fds(root),
            "cpu": sum(cpu for cpu, _, _ in tree.values()),
            "pubs_cpu": sum(cpu_of(p.pid) for p in pubs), "players_cpu": cpu_of(players_pid),
            "pubs_alive": sum(1 for p in pubs if p.poll() is None)}


class Players:
    """bench/llhls_players.rs running against one server; its JSON report lines are collected
    (and each interval's line is echoed to stderr, so a 30-minute run shows progress)."""

    def __init__(self, exe, port, paths, clients, seconds, report_every, plain, work):
        self.lines = []
        self.err_path = os.path.join(work, f"players-{time.time_ns()}.err")
        args = [exe, "--addr", f"127.0.0.1:{port}", "--paths", paths, "--clients", str(clients),
                "--seconds", str(int(seconds)), "--report-every", str(int(report_every)),
                "--timeout-s", str(TIMEOUT_S)]
        if plain:
            args += ["--plain", "--reload-ms", str(PLAIN_RELOAD_MS)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(self.err_path, "w"), text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            self.lines.append(report)
            print(f"  players t={report.get('elapsed_s')} s: ok {report.get('ok')}, errors {report.get('errors')}, "
                  f"reconnects {report.get('reconnects')}, latency {report.get('latency_ms')}", file=sys.stderr)

    def final(self):
        self.reader.join(10)
        last = self.lines[-1] if self.lines else None
        if not last or not last.get("final"):
            raise SystemExit(f"llhls_players gave no final report (exit {self.proc.returncode}):\n"
                             + open(self.err_path).read()[-2000:])
        return last

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(players, root, pubs, seconds):
    """Samples every SAMPLE_EVERY_S until the players exit (bounded: they stop themselves)."""
    t0 = time.monotonic()
    samples = [sample(root, pubs, players.proc.pid, 0.0)]
    deadline = t0 + seconds + 2 * TIMEOUT_S + 30
    k = 1
    while players.proc.poll() is None:
        if time.monotonic() > deadline:
            players.stop()
            raise SystemExit("llhls_players did not stop at the end of its run")
        try:
            players.proc.wait(max(0.0, t0 + k * SAMPLE_EVERY_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            samples.append(sample(root, pubs, players.proc.pid, time.monotonic() - t0))
            k += 1
    return samples


def summarise(samples, warmup_s, report, pubs, not_live):
    after = [s for s in samples if s["t"] >= warmup_s]
    if len(after) < 2:
        raise SystemExit(f"too few samples after the warm-up ({len(after)}): run longer than the warm-up")
    base, last = after[0], after[-1]
    peak = max(s["rss"] for s in after)
    fds = [s["fds"] for s in after]
    third = max(1, len(fds) // 3)
    span = max(last["t"] - base["t"], 1e-9)
    return {
        "ok": report["ok"], "errors": report["errors"], "samples": report["error_samples"],
        "reconnects": report["reconnects"], "latency": report.get("run_latency_ms", {}),
        "seconds": report["elapsed_s"],
        "rss_warm": base["rss"], "rss_last": last["rss"], "rss_peak": peak,
        "drift": (last["rss"] - base["rss"]) / base["rss"] * 100,
        "peak_drift": (peak - base["rss"]) / base["rss"] * 100,
        "fds_first": statistics.median(fds[:third]), "fds_min": min(fds), "fds_max": max(fds),
        "fds_growth": statistics.median(fds[-third:]) - statistics.median(fds[:third]),
        "cores": (last["cpu"] - base["cpu"]) / span,
        "pubs_cores": (last["pubs_cpu"] - base["pubs_cpu"]) / span,
        "players_cores": (last["players_cpu"] - base["players_cpu"]) / span,
        "died": sum(1 for p in pubs if p.poll() is not None), "not_live": not_live,
        "n_samples": len(samples),
    }


# ---- Pulse Edge -------------------------------------------------------------------------------

def wait_for_parts(streams, port):
    """Every stream's media playlist URLs once they all list parts and a preload hint."""
    deadline = time.monotonic() + PARTS_TIMEOUT_S
    urls = [[] for _ in streams]
    while time.monotonic() < deadline:
        todo = [i for i, u in enumerate(urls) if not u]
        found = fanin.parallel(lambda i: fanin.pulse_media_urls(streams[i], port), todo)
        for i, u in zip(todo, found):
            if u and all(ready(url) for url in u):
                urls[i] = u
        if all(urls):
            return urls
        time.sleep(1)
    missing = sum(1 for u in urls if not u)
    raise SystemExit(f"Pulse Edge: {missing} of {len(streams)} streams listed no parts within {PARTS_TIMEOUT_S:g} s")


def ready(url):
    status, text = fanin.fetch(url)
    return status == 200 and "#EXT-X-PART:" in text and "#EXT-X-PRELOAD-HINT:" in text


def pulse_not_live(urls):
    def lag(url):
        status, text = fanin.fetch(url)
        edge = fanin.pulse_edge(text) if status == 200 else None
        return time.time() - edge if edge is not None else float("inf")
    return sum(1 for stream in urls if any(l > LIVE_WITHIN_S for l in fanin.parallel(lag, stream)))


def run_pulse(work, args, exe):
    server = PulseServer(work)
    pubs, players = [], None
    try:
        streams = [server.create(f"held-{i}-{time.time_ns()}", "passthrough") for i in range(args.publishers)]
        settle(server.pid, limit_s=5)
        pubs = fanin.start_publishers([f"{s['rtmp_url']}/{s['stream_key']}" for s in streams])
        urls = wait_for_parts(streams, server.http)
        prefix = f"http://127.0.0.1:{server.http}"
        # The first media playlist of a master is its video rendition (audio comes from EXT-X-MEDIA).
        paths = write_paths(work, [u[0][len(prefix):] for u in urls])
        players = Players(exe, server.http, paths, args.clients, args.seconds, args.report_every, False, work)
        samples = measure(players, server.pid, pubs, args.seconds)
        not_live = pulse_not_live(urls)
        return summarise(samples, args.warmup_s, players.final(), pubs, not_live)
    finally:
        stop_all(players, pubs, server)


# ---- nginx-rtmp -------------------------------------------------------------------------------

def nginx_template(work):
    """fanin's passthrough config with room for the viewers (its 2,048 connections are sized for
    publishers only)."""
    conf = open(fanin.PASSTHROUGH_TEMPLATE).read()
    if "worker_connections 2048;" not in conf:
        raise SystemExit(f"{fanin.PASSTHROUGH_TEMPLATE}: no `worker_connections 2048;` to raise")
    path = os.path.join(work, "loadheld.conf.template")
    with open(path, "w") as f:
        f.write(conf.replace("worker_connections 2048;", f"worker_connections {NGINX_WORKER_CONNECTIONS};"))
    return path


def nginx_edges(urls):
    return fanin.parallel(lambda u: (lambda r: fanin.nginx_edge(r[1]) if r[0] == 200 else None)(fanin.fetch(u)), urls)


def nginx_not_live(start, end, elapsed):
    """Streams whose newest fragment did not advance by the run's length (less the slack
    fanin.py allows: 1.5 s and one fragment)."""
    count = 0
    for e0, e1 in zip(start, end):
        if e0 is None or e1 is None or e1[0] <= e0[0]:
            count += 1
            continue
        new, durations = e1[0] - e0[0], e1[1]
        listed = durations[-new:] if new <= len(durations) else durations
        advance = sum(listed) + max(0, new - len(listed)) * fanin.NGINX_FRAGMENT_S
        count += advance < elapsed - fanin.BEHIND_S - fanin.NGINX_FRAGMENT_S
    return count


def run_nginx(work, args, exe):
    nginx = Nginx(work, template=nginx_template(work))
    pubs, players = [], None
    try:
        names = [f"held{i}" for i in range(args.publishers)]
        settle(nginx.proc.pid, limit_s=5)
        pubs = fanin.start_publishers([nginx.publish_url(name) for name in names])
        urls = [f"http://127.0.0.1:{nginx.http}/hls/{name}/index.m3u8" for name in names]
        deadline = time.monotonic() + PARTS_TIMEOUT_S
        while not all(nginx_edges(urls)):
            if time.monotonic() > deadline:
                raise SystemExit(f"nginx-rtmp: not every stream had a playlist within {PARTS_TIMEOUT_S:g} s")
            time.sleep(1)
        paths = write_paths(work, [f"/hls/{name}/index.m3u8" for name in names])
        start, t0 = nginx_edges(urls), time.monotonic()
        players = Players(exe, nginx.http, paths, args.clients, args.seconds, args.report_every, True, work)
        samples = measure(players, nginx.proc.pid, pubs, args.seconds)
        not_live = nginx_not_live(start, nginx_edges(urls), time.monotonic() - t0)
        return summarise(samples, args.warmup_s, players.final(), pubs, not_live)
    finally:
        stop_all(players, pubs, nginx)


def stop_all(players, pubs, server):
    if players:
        players.stop()
    fanin.stop_publishers(pubs)
    server.stop()


def write_paths(work, paths):
    path = os.path.join(work, f"paths-{time.time_ns()}.txt")
    with open(path, "w") as f:
        f.write("\n".join(paths) + "\n")
    return path


# ---- report -----------------------------------------------------------------------------------

def fds_flat(r):
    return r["fds_growth"] <= max(FDS_SLACK, FDS_SLACK_PCT / 100 * r["fds_first"])


def targets(r):
    return [
        ("zero errors", sum(r["errors"].values()) == 0),
        (f"RSS drift ≤ {RSS_DRIFT_TARGET_PCT:g} % after warm-up", r["drift"] <= RSS_DRIFT_TARGET_PCT),
        ("flat fds after warm-up", fds_flat(r)),
        ("every publisher alive, every stream live at the end", r["died"] == 0 and r["not_live"] == 0),
    ]


def rows(r):
    errors = sum(r["errors"].values())
    kinds = ", ".join(f"{k} {n}" for k, n in r["errors"].items())
    lat = r["latency"]
    return [
        ("responses ok (per second)", f"{r['ok']} ({r['ok'] / max(r['seconds'], 1e-9):.0f}/s)"),
        ("errors", f"{errors}" + (f" ({kinds})" if kinds else "")),
        ("clean reconnects", f"{r['reconnects']}"),
        ("request → response p50 / p99 / max (ms)", f"{lat.get('p50')} / {lat.get('p99')} / "
         f"{lat.get('max') and round(lat['max'])}"),
        ("RSS at warm-up / last / peak (MiB)", f"{r['rss_warm']:.0f} / {r['rss_last']:.0f} / {r['rss_peak']:.0f}"),
        ("RSS drift last / peak vs warm-up", f"{r['drift']:+.2f} % / {r['peak_drift']:+.2f} %"),
        ("open fds after warm-up min / max; growth of the median, first to last third",
         f"{r['fds_min']} / {r['fds_max']}; {r['fds_growth']:+g}"),
        ("server CPU after warm-up (cores)", f"{r['cores']:.2f}"),
        ("publishers' / players' own CPU, not in the server's (cores)",
         f"{r['pubs_cores']:.2f} / {r['players_cores']:.2f}"),
        ("publishers died / streams not live at the end", f"{r['died']} / {r['not_live']}"),
    ]


def print_report(results, args, machine, command):
    print(f"### Load held: {args.publishers} passthrough publishers + {args.clients} LL-HLS players "
          f"(issue 14) — {common.now_utc()}\n")
    print(f"Machine: {machine}  ")
    nginx = any(side == "nginx" for side, _ in results)
    if nginx:
        print(f"Baseline: {common.versions()}, config `nginx/rtmp-baseline/passthrough.conf.template` with "
              f"worker_connections {NGINX_WORKER_CONNECTIONS}  ")
    print(f"Command: `{command}`  ")
    baseline = f"nginx-rtmp plain HLS (2 s fragments), players reload every {PLAIN_RELOAD_MS} ms; " if nginx else ""
    print(f"Settings: source `{os.path.basename(fanin.FANIN_SOURCE)}` (720p30, 3 Mbit/s, 2 s GOP, AAC) looped by "
          f"{args.publishers} × `ffmpeg -re -stream_loop -1 -c copy`; Pulse Edge `passthrough` profile (LL-HLS, "
          f"AES-128, 200 ms parts), players chain blocking reloads for the preload-hinted part on one keep-alive "
          f"connection each; {baseline}players spread evenly over the streams' video playlists, no media fetched; "
          f"response timeout {TIMEOUT_S} s; {args.seconds:g} s run per side, warm-up {args.warmup_s:g} s, samples "
          f"every {SAMPLE_EVERY_S:g} s; fresh server per run; players, publishers and server share the machine.\n")
    for side, label in (("pulse", "Pulse Edge"), ("nginx", "nginx-rtmp")):
        runs = [r for s, r in results if s == side]
        if not runs:
            continue
        print(f"| {label} | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |")
        print("|---|" + "---|" * len(runs))
        table = [rows(r) for r in runs]
        for i, (name, _) in enumerate(table[0]):
            print(f"| {name} | " + " | ".join(t[i][1] for t in table) + " |")
        print()
        for r in runs:
            if r["samples"]:
                print(f"{label}: first errors: " + "; ".join(f"`{s}`" for s in r["samples"][:5]) + "  ")
        verdicts = []
        for name, _ in targets(runs[0]):
            met = [dict(targets(r))[name] for r in runs]
            verdicts.append(f"{name}: {'met' if all(met) else '**missed**'}")
        print(f"**{label} targets:** " + "; ".join(verdicts) + ".\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30, help="players' run per side, warm-up included")
    ap.add_argument("--warmup-minutes", type=float, default=5)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--publishers", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1, help="runs per side, order alternating")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--no-pulse", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 publishers, 50 players, 40 s, Pulse only")
    args = ap.parse_args()
    command = "python3 bench/loadheld.py " + " ".join(sys.argv[1:])
    if args.quick:
        args.publishers, args.clients, args.minutes, args.warmup_minutes = 2, 50, 40 / 60, 10 / 60
        args.repeats, args.no_nginx, args.no_pulse = 1, True, False
    if args.no_nginx and args.no_pulse:
        raise SystemExit("--no-nginx and --no-pulse leave nothing to run")
    args.seconds, args.warmup_s = args.minutes * 60, args.warmup_minutes * 60
    args.report_every = 10 if args.quick else 60
    common.require("ffmpeg", "cargo", *([] if args.no_nginx else ["nginx"]))
    if not args.no_nginx and not os.path.exists(common.RTMP_MODULE):
        raise SystemExit(f"{common.RTMP_MODULE} missing (apt-get install -y --no-install-recommends libnginx-mod-rtmp)")
    # Inherited by the server and the players: one descriptor per player connection on each side.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.clients + 4096
    if hard != resource.RLIM_INFINITY:
        want = min(hard, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    common.cleanup_on_exit()
    fanin.make_fanin_source()
    exe = common.bench_binary("llhls_players", quick=args.quick)
    machine = common.machine()
    sides = ([] if args.no_pulse else ["pulse"]) + ([] if args.no_nginx else ["nginx"])
    results = []
    work = tempfile.mkdtemp(prefix="pulse-loadheld-")
    try:
        for r in range(args.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                print(f"== {side} run {r + 1}", file=sys.stderr)
                run = run_pulse if side == "pulse" else run_nginx
                results.append((side, run(work, args, exe)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_report(results, args, machine, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
