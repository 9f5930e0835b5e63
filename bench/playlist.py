#!/usr/bin/env python3
"""Issue 3, figure 6: playlist serving, Pulse Edge against nginx serving the same bytes statically.

One Pulse Edge server, one live stream on the `passthrough` profile (the 1080p30 source published
in a loop with `ffmpeg -re -c copy`), so the media playlist is real and changes with every part.

  * Non-blocking: `wrk --latency` against the stream's signed media playlist (the JWT in `?token=`
    is verified on every request) and, in the same run, against nginx serving the same playlist
    bytes as a static file (nginx/rtmp-baseline/static.conf.template; the file is refreshed from
    Pulse just before each nginx run). Same wrk threads / connections / duration on both sides,
    sides alternate run by run (order flips per repeat). CPU split, both sides alike: the server
    is started on core 1 (CPU affinity set at launch, as `taskset -c 1` would: Pulse's tokio
    runtime sizes itself to one worker, nginx runs one worker), wrk and the publisher on core 0. Server CPU over the run is reported too, so a reader can
    tell whether the server or wrk was the bottleneck. wrk sends no Accept-Encoding: neither side
    compresses.
  * Blocking: N clients (bench/blocking_clients.rs, a Rust cargo bench target built here with
    `cargo bench --no-run`) each hold a blocking reload (`_HLS_msn`/`_HLS_part`) for a part a few
    part-durations ahead of the preload hint, on the same signed media playlist. Wake time = the
    client's wall clock when its complete response arrived minus the server's wall clock when it
    published the part: the server's "edge published" debug event, whose `unix_us` field is the
    wall clock read just before the rendition's waiters are woken (RUST_LOG turns on only
    `pulse_edge::hls::blocking` at debug). No response can precede it; the part becomes visible
    a few microseconds later, when the packager releases its lock, so the wake time errs long by
    that much, never short. Same machine, same clock.
    This half uses a second Pulse server started on both cores (its default runtime, two
    workers); server and clients share both cores, so the clients' CPU is part of the load.
    Every response must be a 200 listing the requested part (or part 0 of the next segment when
    the requested part's segment closed first: RFC 8216bis releases the request then).

Usage: python3 bench/playlist.py [--repeats N] [--seconds S] [--threads T] [--connections C]
                                 [--clients N] [--parts K] [--no-blocking] [--no-wrk] [--quick]
Needs: target/release/pulse-edge, cargo, ffmpeg, nginx, wrk.  Prints a Markdown block.
"""

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Nginx, PulseServer, process_tree, publish, stop_tree  # noqa: E402

STATIC_TEMPLATE = os.path.join(common.ROOT, "nginx", "rtmp-baseline", "static.conf.template")
SERVER_CPUS = {1}
CLIENT_CPUS = {0}
WAKE_P99_TARGET_MS = 20.0
RATIO_TARGET = 1.0
LOG_FILTER = "info,pulse_edge::hls::blocking=debug"
EDGE_RE = re.compile(r"edge published.*?rendition=\"?([^\s\"]+)\"?\s+msn=(\d+)\s+part=(\d+).*?unix_us=(\d+)")


# ---- helpers ------------------------------------------------------------------------------------

def tree_cpu(root):
    total = 0.0
    for pid, _ in process_tree(root):
        try:
            total += common.cpu_seconds(pid)
        except OSError:
            pass
    return total


def fetch(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except Exception:
        return 0, b""


def media_playlist_url(server, stream):
    """The signed media playlist of the stream's first video variant, once it lists parts."""
    base = f"http://127.0.0.1:{server.http}/live/{stream['id']}/"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, master = fetch(stream["playback_url"])
        if status == 200:
            variants = [l for l in master.decode().splitlines() if l and not l.startswith("#")]
            if variants:
                url = base + variants[0]
                status, body = fetch(url)
                if status == 200 and b"#EXT-X-PART:" in body:
                    return url, variants[0].split("/")[0]
        time.sleep(0.05)
    raise SystemExit("the stream never went live:\n" + open(server.log_path).read()[-3000:])


def parse_duration_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[m.group(2)]


def run_wrk(url, threads, connections, seconds, server_pid):
    """Requests/s, p99 latency (ms) and the server's CPU (cores) over one wrk run."""
    cpu0, t0 = tree_cpu(server_pid), time.monotonic()
    out = subprocess.run(
        ["wrk", "--latency", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", url],
        capture_output=True, text=True, timeout=seconds + 30,
        preexec_fn=(lambda: os.sched_setaffinity(0, CLIENT_CPUS)) if pinning() else None)
    cores = (tree_cpu(server_pid) - cpu0) / (time.monotonic() - t0)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    if out.returncode != 0 or not rps or not p99 or bad:
        raise SystemExit(f"wrk failed on {url.split('?')[0]}:\n{text}\n{out.stderr}")
    return float(rps.group(1)), parse_duration_ms(p99.group(1)), cores, (errors.group(0) if errors else "")


ALL_CPUS = set(range(os.cpu_count() or 1))


class affinity:
    """Runs a block on `cpus`: processes started inside inherit it (Linux: pid 0 = this thread)."""

    def __init__(self, cpus):
        self.cpus = cpus

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpus)

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


def stop_all(servers, pubs):
    while pubs:
        stop_tree(pubs.pop(), 15)
    while servers:
        servers.pop().stop()


def pinning():
    return os.cpu_count() >= 2 and hasattr(os, "sched_setaffinity")


def publish_static(prefix, playlist_url, nginx_url):
    """Copies Pulse's current playlist bytes to nginx's file and waits until nginx serves them."""
    status, body = fetch(playlist_url)
    if status != 200 or not body:
        raise SystemExit(f"could not read the Pulse playlist for nginx (status {status})")
    path = os.path.join(prefix, "hls", "index.m3u8")
    with open(path + ".tmp", "wb") as f:
        f.write(body)
    os.rename(path + ".tmp", path)
    deadline = time.monotonic() + 3  # open_file_cache_valid is 1 s
    while time.monotonic() < deadline:
        if fetch(nginx_url) == (200, body):
            return len(body)
        time.sleep(0.1)
    raise SystemExit("nginx does not serve the copied playlist")


def blocking_client_binary(quick=False):
    """The load client (bench/blocking_clients.rs)."""
    return common.bench_binary("blocking_clients", quick)


def part_publish_times(log_path, rendition):
    """{(msn, part): unix µs} from the server's "edge published" debug events: the wall clock
    taken just before the rendition's blocked requests are woken. A part is published at the
    first event that lists it (a segment closing publishes the same last part again)."""
    times = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            m = EDGE_RE.search(line)
            if m and m.group(1) == rendition:
                key = (int(m.group(2)), int(m.group(3)))
                times.setdefault(key, int(m.group(4)))
    return times


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def run_blocking(exe, server, url, rendition, clients, parts, ahead):
    """Per round: (wake times in ms, request lead before the publish in ms, releasing part)."""
    path = url[len(f"http://127.0.0.1:{server.http}"):]
    out = subprocess.run(
        [exe, "--addr", f"127.0.0.1:{server.http}", "--path", path, "--clients", str(clients),
         "--rounds", str(parts), "--ahead", str(ahead), "--timeout-s", "10"],
        capture_output=True, text=True, timeout=60 + parts * 15)
    rounds = []
    for line in out.stdout.splitlines():
        try:
            rounds.append(json.loads(line))
        except ValueError:
            continue
    failures = [(r["round"], r["errors"]) for r in rounds if r["errors"]]
    if out.returncode != 0 or len(rounds) != parts or failures:
        raise SystemExit(f"blocking clients failed (exit {out.returncode}): {failures[:3]}\n{out.stderr[-2000:]}")
    time.sleep(0.2)  # let the server's last log lines reach the file
    published = part_publish_times(server.log_path, rendition)
    results = []
    for r in rounds:
        if len(r["released_by"]) != 1:
            raise SystemExit(f"round {r['round']}: clients were released by different parts {r['released_by']}")
        msn, part, _ = r["released_by"][0]
        at = published.get((msn, part))
        if at is None:
            raise SystemExit(f"round {r['round']}: no 'edge published' log line for {rendition} {msn}.{part}")
        wakes = [(us - at) / 1000 for us in r["received_us"]]
        results.append((wakes, (at - r["sent_done_us"]) / 1000, (msn, part), len(r["received_us"])))
    return results


def fmt_runs(values, spec="{:.0f}"):
    return ", ".join(spec.format(v) for v in values)


# ---- main ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5, help="wrk runs per side")
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (wrk has one core)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--clients", type=int, default=5000, help="blocking clients")
    ap.add_argument("--parts", type=int, default=5, help="parts (rounds) the blocking clients wait for")
    ap.add_argument("--ahead", type=int, default=4, help="parts past the preload hint a blocking round waits for")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds of live stream before measuring")
    ap.add_argument("--no-blocking", action="store_true")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 s wrk per side, 300 blocking clients, one part")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.clients, args.parts, args.ahead, args.warmup = 1, 2, 300, 1, 2, 0.0

    common.cleanup_on_exit()
    common.require("ffmpeg", "nginx", "wrk", "cargo")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 4 * args.clients + 1024)) if hard != resource.RLIM_INFINITY else 4 * args.clients + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the server and the client
    common.make_source()
    exe = None if args.no_blocking else blocking_client_binary(quick=args.quick)
    command = "python3 bench/playlist.py " + " ".join(sys.argv[1:])

    workdir = tempfile.mkdtemp(prefix="bench-playlist-")
    servers, pubs = [], []
    wrk_rows = {"pulse": [], "nginx": []}
    ratios, sizes, blocking = [], [], []
    rendition = "?"
    try:
        machine = common.machine()

        def live_stream(cpus):
            """A server started on `cpus` (its runtime sizes itself to them) with a live stream."""
            with affinity(cpus):
                server = PulseServer(workdir, env={"RUST_LOG": LOG_FILTER})
                servers.append(server)
                stream = server.create(f"playlist-{time.time_ns()}", "passthrough")
            with affinity(CLIENT_CPUS if cpus == SERVER_CPUS else cpus):
                pubs.append(publish(f"{stream['rtmp_url']}/{stream['stream_key']}", loop=True))
            url, name = media_playlist_url(server, stream)
            time.sleep(args.warmup)  # a few segments listed, as a viewer would see mid-stream
            return server, url, name

        if not args.no_wrk:
            server, url, rendition = live_stream(SERVER_CPUS if pinning() else ALL_CPUS)
            with affinity(SERVER_CPUS if pinning() else ALL_CPUS):
                nginx = Nginx(workdir, template=STATIC_TEMPLATE)
                servers.append(nginx)
            nginx_url = f"http://127.0.0.1:{nginx.http}/hls/index.m3u8"
            for repeat in range(args.repeats):
                order = ["pulse", "nginx"] if repeat % 2 == 0 else ["nginx", "pulse"]
                run = {}
                for side in order:
                    if side == "nginx":
                        sizes.append(publish_static(nginx.prefix, url, nginx_url))
                        run[side] = run_wrk(nginx_url, args.threads, args.connections, args.seconds, nginx.proc.pid)
                    else:
                        run[side] = run_wrk(url, args.threads, args.connections, args.seconds, server.pid)
                    wrk_rows[side].append(run[side])
                ratios.append(run["pulse"][0] / run["nginx"][0])
            stop_all(servers, pubs)

        if exe:
            server, url, rendition = live_stream(ALL_CPUS)
            blocking = run_blocking(exe, server, url, rendition, args.clients, args.parts, args.ahead)
    finally:
        stop_all(servers, pubs)
        shutil.rmtree(workdir, ignore_errors=True)

    # ---- report ----
    print(f"### Playlist serving — {common.now_utc()}\n")
    print(f"Machine: {machine}\n")
    print(f"Command: `{command}`\n")
    print(f"Settings: one `passthrough` stream (1080p30 source looped, `-re -c copy`), default HLS settings "
          f"(200 ms part target, 2 s segments, 12-segment window, AES-128 on), media playlist `{rendition}` "
          f"with its playback JWT on every request. "
          + (f"wrk {args.threads} thread(s), {args.connections} connections, {args.seconds} s per run, "
             f"{args.repeats} run(s) per side alternating; " if not args.no_wrk else "")
          + ("each server started on core 1 (CPU affinity inherited from launch, so Pulse's tokio runtime "
             "sizes itself to one worker and nginx runs one worker), wrk + publisher on core 0. "
             if pinning() and not args.no_wrk else "")
          + (f"Blocking: a second Pulse server started on all cores (its default runtime), {args.clients} "
             f"clients, {args.parts} part(s), each {args.ahead} part(s) past the preload hint, clients on "
             f"all cores too." if exe else "") + "\n")
    failed = False
    print("| figure | median | runs |\n|---|---|---|")
    if not args.no_wrk:
        for side, label in (("pulse", "Pulse Edge, signed media playlist"), ("nginx", "nginx, same bytes as a static file")):
            rows = wrk_rows[side]
            print(f"| {label}: requests/s | {statistics.median(r[0] for r in rows):.0f} | {fmt_runs(r[0] for r in rows)} |")
            print(f"| {label}: p99 latency (ms) | {statistics.median(r[1] for r in rows):.2f} | "
                  f"{fmt_runs((r[1] for r in rows), '{:.2f}')} |")
            print(f"| {label}: server CPU during the run (cores) | {statistics.median(r[2] for r in rows):.2f} | "
                  f"{fmt_runs((r[2] for r in rows), '{:.2f}')} |")
        med_ratio = statistics.median(ratios)
        print(f"| **ratio Pulse / nginx, requests/s** (target ≥ {RATIO_TARGET:.1f}) | **{med_ratio:.2f}** | "
              f"{fmt_runs(ratios, '{:.2f}')} |")
        p99_ratios = [p[1] / n[1] for p, n in zip(wrk_rows["pulse"], wrk_rows["nginx"])]
        print(f"| ratio Pulse / nginx, p99 latency | {statistics.median(p99_ratios):.2f} | "
              f"{fmt_runs(p99_ratios, '{:.2f}')} |")
        print(f"| playlist size served (bytes) | {statistics.median(sizes):.0f} | {fmt_runs(sizes)} |")
        values = [r[0] for rows in wrk_rows.values() for r in rows] + ratios
        failed |= any(math.isnan(v) or v <= 0 for v in values)
    if blocking:
        all_wakes = [w for r in blocking for w in r[0]]
        p50s = [percentile(r[0], 50) for r in blocking]
        p99s = [percentile(r[0], 99) for r in blocking]
        maxs = [max(r[0]) for r in blocking]
        leads = [r[1] for r in blocking]
        print(f"| blocking wake p50 (ms), per part | {statistics.median(p50s):.1f} | {fmt_runs(p50s, '{:.1f}')} |")
        print(f"| **blocking wake p99 (ms), per part** (target ≤ {WAKE_P99_TARGET_MS:.0f}) | "
              f"**{statistics.median(p99s):.1f}** | {fmt_runs(p99s, '{:.1f}')} |")
        print(f"| blocking wake max (ms), per part | {statistics.median(maxs):.1f} | {fmt_runs(maxs, '{:.1f}')} |")
        print(f"| blocking wake over all parts: p50 / p99 / max (ms) | {percentile(all_wakes, 50):.1f} / "
              f"{percentile(all_wakes, 99):.1f} / {max(all_wakes):.1f} | {len(all_wakes)} responses |")
        print(f"| all requests written before the part was published by (ms) | {statistics.median(leads):.0f} | "
              f"{fmt_runs(leads)} |")
        print(f"\nParts waited for: {', '.join(f'{m}.{p} ({n} × 200)' for _, _, (m, p), n in blocking)}.")
        late = [i for i, lead in enumerate(leads) if lead < 0]
        if late:
            print(f"\nNote: in part(s) {', '.join(str(i + 1) for i in late)} the clients were still writing their "
                  "requests when the part was published; those wake times include handling the late requests "
                  "(kept in the figures, which errs against Pulse). A larger --ahead avoids it.")
        failed |= any(math.isnan(v) for v in p99s) or any(n != args.clients for *_, n in blocking)
        if min(all_wakes) < 0:
            print(f"\nWARNING: a response arrived {-min(all_wakes):.3f} ms before the part's publish instant.")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
