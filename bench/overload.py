#!/usr/bin/env python3
"""Issue 14, overload: a live ladder while other work takes the CPU, Pulse Edge against
nginx-rtmp + exec ffmpeg under the same load.

One source is published in a loop (`ffmpeg -re -c copy`) into
  * Pulse Edge's `default` ladder (1080p copy + 720p/480p/360p x264 + AAC), and
  * nginx-rtmp's `exec ffmpeg` ladder (nginx/rtmp-baseline/nginx.conf.template, the same rungs).
After `--load-at` seconds, `threads` busy loops (one process each, plain `while True`, normal
priority: "other load" on the machine) start, and stop `--load-seconds` later; the stream runs
`--minutes` in all. Every 0.5 s every media playlist of the stream is read:
  * Pulse: lag = wall clock - live edge (the newest segment's PROGRAM-DATE-TIME plus the parts and
    segments after it), per rendition; PDT is anchored to the wall clock when the stream started,
    so this is how far behind live each rendition is.
  * both sides: drift = growth of (wall time - media time put out) since before the load, per
    rendition, from the segments (and, for Pulse, parts) each playlist lists. nginx's playlists have
    no PDT, so drift is the measure both sides share; nginx's granularity is one 2 s fragment.
Pulse's lifecycle events come from its admin API: `stream.degraded` (with the shed rungs) and
`stream.recovered`, timed against the load's start and end. If no `stream.recovered` came by the
end of the stream, the run keeps watching for up to `--recover-wait` seconds more.

Targets (issue 14): within 2 s of live over the whole stream, `stream.degraded` within 10 s of the
load (when the ladder falls behind at all), `stream.recovered` after the load stops.

Scenarios (`--scenarios`, SOURCE:THREADS, comma-separated): the issue's own load (one core of
other load) beside a 1080p30 and a 1080p60 ladder (the 1080p60 ladder alone needs more than one
core of this 2-core machine), and a much heavier load (eight busy loops) beside the 1080p60 ladder.
Sides alternate per scenario (Pulse first, then nginx first).

Usage: python3 bench/overload.py [--scenarios 1080p30:1,1080p60:1,1080p60:8] [--minutes 5] [--load-at 60]
                                 [--load-seconds 150] [--recover-wait 120] [--no-nginx] [--quick]
Needs: target/release/pulse-edge, ffmpeg, nginx with libnginx-mod-rtmp.  Prints Markdown.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import fanin  # noqa: E402
from common import Nginx, PulseServer, tree_sample  # noqa: E402

SAMPLE_S = 0.5
LAG_TARGET_S = 2.0
DEGRADED_TARGET_S = 10.0
NGINX_RENDITIONS = ("_src", "_720p", "_480p", "_360p")
SOURCES = {
    "1080p30": common.SOURCE,
    "1080p60": os.path.join(common.CACHE, "src-1080p60-60s.flv"),
    "720p30": os.path.join(common.CACHE, "src-720p30-60s.flv"),
}


def make_source(name):
    path = SOURCES[name]
    if name == "1080p30":
        common.make_source()
    if os.path.exists(path):
        return path
    size, rate = {"1080p60": ("1920x1080", 60), "720p30": ("1280x720", 30)}[name]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "60",
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", str(2 * rate), "-bf", "0",
         "-b:v", "6000k" if rate == 60 else "3000k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
         path + ".tmp.flv"], check=True)
    os.rename(path + ".tmp.flv", path)
    return path


# ---- other load ------------------------------------------------------------------------------

class BusyLoad:
    """`threads` single-threaded busy loops at normal priority."""

    def __init__(self, threads):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(threads)]

    def cpu(self):
        return sum(common.cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


# ---- playlists -------------------------------------------------------------------------------

class MediaClock:
    """Media time one rendition has put out, from the segments (and parts) its playlist lists:
    segments are remembered by sequence number, since they leave the playlist's window."""

    def __init__(self):
        self.segments = {}

    def update(self, text):
        seq, durations, parts = None, [], 0.0
        for line in text.splitlines():
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                seq = int(line.split(":", 1)[1])
            elif line.startswith("#EXTINF:"):
                durations.append(float(line.split(":", 1)[1].split(",")[0]))
                parts = 0.0
            elif line.startswith("#EXT-X-PART:"):
                m = re.search(r"DURATION=([0-9.]+)", line)
                parts += float(m.group(1)) if m else 0.0
        if seq is None:
            return None
        for i, d in enumerate(durations):
            self.segments[seq + i] = d
        return sum(self.segments.values()) + parts


def fetch_text(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


def admin_events(server, token, stream_id):
    req = urllib.request.Request(f"http://127.0.0.1:{server.http}/api/v1/apps/app_default/events",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            events = json.loads(r.read())
    except Exception:
        return []
    return [e for e in events if e.get("stream_id") == stream_id]


# ---- one run ---------------------------------------------------------------------------------

class Run:
    """Samples of one side: per rendition (t, media time, pulse lag or None)."""

    def __init__(self, urls):
        self.urls = urls
        self.clocks = {name: MediaClock() for name in urls}
        self.samples = {name: [] for name in urls}

    def sample(self, t0):
        for name, url in self.urls.items():
            text = fetch_text(url)
            now = time.time()
            if not text:
                continue
            media = self.clocks[name].update(text)
            edge = fanin.pulse_edge(text)
            if media is not None:
                self.samples[name].append((now - t0, media, (now - edge) if edge else None))


def drive(run, root, load_at, load_s, total_s, threads, watch=None, extra_s=0.0):
    """Samples until total_s (and while `watch()` is false, up to extra_s more); the load runs
    from load_at to load_at + load_s. Returns timings and CPU."""
    t0 = time.time()
    load, load_cpu, server_cpu0 = None, 0.0, tree_cpu(root)
    times = {}
    while True:
        t = time.time() - t0
        if load is None and "load_start" not in times and t >= load_at:
            load, times["load_start"] = BusyLoad(threads), time.time()
        if load is not None and t >= load_at + load_s:
            load_cpu = load.cpu()
            load.stop()
            load, times["load_stop"] = None, time.time()
        if t >= total_s and (watch is None or watch() or t >= total_s + extra_s):
            break
        run.sample(t0)
        time.sleep(SAMPLE_S)
    if load is not None:
        load_cpu = load.cpu()
        load.stop()
        times["load_stop"] = time.time()
    times["t0"] = t0
    times["server_cores"] = (tree_cpu(root) - server_cpu0) / (time.time() - t0)
    times["load_cores"] = load_cpu / max(1e-9, times["load_stop"] - times["load_start"])
    return times


def tree_cpu(root):
    return sum(cpu for cpu, _, _ in tree_sample(root).values())


def drift_stats(run, times):
    """Per rendition: drift added since before the load (max during and after the load, end)."""
    load_start = times["load_start"] - times["t0"]
    out = {}
    for name, samples in run.samples.items():
        before = [t - m for t, m, _ in samples if load_start - 20 <= t < load_start]
        after = [(t, t - m) for t, m, _ in samples if t >= load_start]
        if not before or not after:
            continue
        ref = min(before)
        out[name] = {"max": max(d for _, d in after) - ref, "end": after[-1][1] - ref}
    return out


def lag_stats(run):
    """Pulse only: per rendition, the absolute lag behind live over the whole run."""
    out = {}
    for name, samples in run.samples.items():
        lags = [lag for _, _, lag in samples if lag is not None]
        if lags:
            out[name] = {"median": statistics.median(lags), "max": max(lags)}
    return out


def run_pulse(work, source, threads, args):
    # OVERLOAD_RUST_LOG=info,pulse_edge::media::ladder=debug shows every judgement in the log.
    server = PulseServer(work, env={"RUST_LOG": os.environ.get("OVERLOAD_RUST_LOG", "info")})
    pub = None
    try:
        stream = server.create(f"overload-{time.time_ns()}", "default")
        token = json.loads(subprocess.run([common.BIN, "admin-token", "create", "--name", "bench"], env=server.env,
                                          cwd=server.data, check=True, capture_output=True, text=True).stdout)["secret"]
        pub = common.publish(f"{stream['rtmp_url']}/{stream['stream_key']}", loop=True, source=source)
        urls = wait_urls(lambda: fanin.pulse_media_urls(stream, server.http), 2)
        run = Run({u.split("/")[-2]: u for u in urls})
        recovered = lambda: any(e["type"] == "stream.recovered" for e in admin_events(server, token, stream["id"]))
        times = drive(run, server.pid, args.load_at, args.load_seconds, args.minutes * 60, threads,
                      watch=recovered, extra_s=args.recover_wait)
        events = [e for e in admin_events(server, token, stream["id"])
                  if e["type"] in ("stream.degraded", "stream.recovered")]
        alive = pub.poll() is None
        return {"run": run, "times": times, "events": sorted(events, key=lambda e: e["created_at_ms"]),
                "publisher_alive": alive, "lag": lag_stats(run), "drift": drift_stats(run, times)}
    finally:
        if pub is not None:
            pub.terminate()
            pub.wait()
        server.stop()


def run_nginx(work, source, threads, args):
    nginx = Nginx(work)
    pub = None
    try:
        name = f"overload{time.time_ns()}"
        pub = common.publish(nginx.publish_url(name), loop=True, source=source)
        base = f"http://127.0.0.1:{nginx.http}/hls/{name}"
        urls = wait_urls(lambda: [f"{base}{r}/index.m3u8" for r in NGINX_RENDITIONS], len(NGINX_RENDITIONS))
        run = Run({u.split("/")[-2].replace(name, "") or "src": u for u in urls})
        times = drive(run, nginx.proc.pid, args.load_at, args.load_seconds, args.minutes * 60, threads)
        return {"run": run, "times": times, "events": [], "publisher_alive": pub.poll() is None,
                "lag": {}, "drift": drift_stats(run, times)}
    finally:
        if pub is not None:
            pub.terminate()
            pub.wait()
        nginx.stop()


def wait_urls(candidates, count, timeout=60):
    """The media playlist URLs once `count` of them answer with a playlist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        urls = candidates()
        if len(urls) >= count and all(fetch_text(u) and "#EXTINF" in fetch_text(u) for u in urls):
            return urls
        time.sleep(0.25)
    raise SystemExit("the stream never went live")


# ---- report ----------------------------------------------------------------------------------

def event_timing(result):
    times = result["times"]
    degraded = [e for e in result["events"] if e["type"] == "stream.degraded"]
    recovered = [e for e in result["events"] if e["type"] == "stream.recovered"]
    first_degraded = (degraded[0]["created_at_ms"] / 1000 - times["load_start"]) if degraded else None
    first_recovered = None
    if recovered:
        first_recovered = recovered[-1]["created_at_ms"] / 1000 - times["load_stop"]
    shed = degraded[0]["body"].get("data", {}).get("shed") if degraded else None
    return first_degraded, first_recovered, len(degraded), shed


def fmt(x, f=".2f"):
    return "—" if x is None else format(x, f)


def report(results, args, machine):
    print(f"### Overload: a live ladder under other load — {common.now_utc()}\n")
    print(f"Machine: {machine}  ")
    print(f"Command: `python3 bench/overload.py {' '.join(sys.argv[1:])}`  ")
    print(f"{common.versions()}  ")
    print(f"Stream {args.minutes:g} min; other load (busy loops, one process each) from {args.load_at:g} s "
          f"for {args.load_seconds:g} s; playlists read every {SAMPLE_S} s. Targets: ≤ {LAG_TARGET_S:g} s behind "
          f"live, `stream.degraded` ≤ {DEGRADED_TARGET_S:g} s after the load starts (when the ladder falls behind), "
          "`stream.recovered` after it stops.\n")
    print("| scenario | server | server cores | load cores | worst lag behind live (s) | drift added, worst "
          "rendition: max / at end (s) | drift per min of load (s) | degraded after load start (s) | "
          "recovered after load stop (s) | publisher alive |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (scenario, side), r in results.items():
        degraded_s, recovered_s, _, _ = event_timing(r)
        worst_lag = max((v["max"] for v in r["lag"].values()), default=None)
        drift_max = max((v["max"] for v in r["drift"].values()), default=None)
        drift_end = max((v["end"] for v in r["drift"].values()), default=None)
        per_min = drift_max / (args.load_seconds / 60) if drift_max is not None else None
        print(f"| {scenario} | {side} | {r['times']['server_cores']:.2f} | {r['times']['load_cores']:.2f} | "
              f"{fmt(worst_lag)} | {fmt(drift_max)} / {fmt(drift_end)} | {fmt(per_min)} | {fmt(degraded_s, '.1f')} | "
              f"{fmt(recovered_s, '.1f')} | {'yes' if r['publisher_alive'] else 'no'} |")
    print()
    for (scenario, side), r in results.items():
        if side != "Pulse Edge":
            continue
        _, _, n_degraded, shed = event_timing(r)
        per = ", ".join(f"{k} {v['max']:.2f}" for k, v in sorted(r["lag"].items()))
        print(f"- {scenario}, Pulse Edge: worst lag per rendition (s): {per}; degraded events {n_degraded}, "
              f"first shed {shed}.")
    print()


# (flag, type, default, the --quick value)
OPTIONS = (
    ("--scenarios", str, "1080p30:1,1080p60:1,1080p60:8", "720p30:1"),
    ("--minutes", float, 5, 0.5),
    ("--load-at", float, 60, 10),
    ("--load-seconds", float, 150, 10),
    ("--recover-wait", float, 120, 0),
)


def parse_args():
    ap = argparse.ArgumentParser()
    for flag, kind, default, _ in OPTIONS:
        ap.add_argument(flag, type=kind, default=default)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--quick", action="store_true", help="one 720p30 scenario on Pulse Edge, under a minute")
    args = ap.parse_args()
    if args.quick:
        for flag, _, _, quick in OPTIONS:
            setattr(args, flag[2:].replace("-", "_"), quick)
        args.no_nginx = True
    return args


def main():
    args = parse_args()
    common.require("ffmpeg", *([] if args.no_nginx else ["nginx"]))
    common.cleanup_on_exit()
    machine = common.machine()
    work = tempfile.mkdtemp(prefix="pulse-overload-")
    results = {}
    for i, scenario in enumerate(args.scenarios.split(",")):
        source_name, threads = scenario.split(":")
        source = make_source(source_name)
        label = f"{source_name}, {threads} busy"
        sides = [("Pulse Edge", run_pulse)] + ([] if args.no_nginx else [("nginx-rtmp + ffmpeg", run_nginx)])
        for side, fn in (sides if i % 2 == 0 else sides[::-1]):
            print(f"overload: {label}: {side}", file=sys.stderr, flush=True)
            results[(label, side)] = fn(work, source, int(threads), args)
    report(dict(sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1] != "Pulse Edge"))),
           args, machine)
    if args.quick:
        r = results[(f"720p30, 1 busy", "Pulse Edge")]
        if not r["publisher_alive"] or not any(r["lag"].values()):
            raise SystemExit("overload --quick: the stream was not live throughout")


if __name__ == "__main__":
    main()
