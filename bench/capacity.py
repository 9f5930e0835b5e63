#!/usr/bin/env python3
"""Figure 4, second half: real-time speed. The largest source the default ladder sustains on
this machine.

For each source size (generated once into bench/.cache: testsrc2 + sine, x264 veryfast, 2 s GOP,
no B-frames, bitrate scaled with the pixel rate), one source is published with `-re -c copy`
into the `default` profile for a fixed time. The ladder keeps up when the part availability
lag the server logs for the session stays bounded: a ladder slower than real time falls
further behind every second, so its p95 lag grows with the run length. Sustained means
p95 < 0.5 s and max < 1.5 s over the run. Server CPU (cores) is reported beside it.

Usage: python3 bench/capacity.py [--seconds 25] [--sizes 1080p30,1080p60,1440p30,2160p30,2160p60] [--quick]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import PulseServer, cpu_seconds, publish, settle  # noqa: E402

SIZES = {"360p30": (640, 360, 30, 800), "720p30": (1280, 720, 30, 2500), "1080p30": (1920, 1080, 30, 4500),
         "1080p60": (1920, 1080, 60, 7000), "1440p30": (2560, 1440, 30, 8000), "2160p30": (3840, 2160, 30, 16000),
         "2160p60": (3840, 2160, 60, 25000)}
SOURCE_S = 30


def source(size):
    w, h, fps, kbps = SIZES[size]
    path = os.path.join(common.CACHE, f"cap-{size}-{SOURCE_S}s.flv")
    if not os.path.exists(path):
        os.makedirs(common.CACHE, exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}",
             "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", str(SOURCE_S),
             "-c:v", "libx264", "-preset", "veryfast", "-g", str(2 * fps), "-bf", "0", "-b:v", f"{kbps}k",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", path + ".tmp.flv"], check=True)
        os.rename(path + ".tmp.flv", path)
    return path


def run(server, size, seconds):
    settle(server.pid)
    stream = server.create(f"cap-{size}-{time.time_ns()}", "default")
    before = open(server.log_path, errors="replace").read().count("part availability lag")
    pub = publish(f"{stream['rtmp_url']}/{stream['stream_key']}", loop=True, source=source(size))
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    try:
        time.sleep(seconds)
        if pub.poll() is not None:
            raise SystemExit(f"{size}: publisher exited with {pub.returncode}")
    finally:
        cores = (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
        pub.terminate()
        pub.wait()
    deadline = time.monotonic() + 30  # a ladder that fell behind drains before the session ends
    while time.monotonic() < deadline:
        lines = [l for l in open(server.log_path, errors="replace") if "part availability lag" in l]
        if len(lines) > before:
            line = lines[-1]
            p95, mx = (float(re.search(rf"\b{k}=([\d.]+)", line).group(1)) for k in ("p95_ms", "max_ms"))
            return cores, p95, mx
        time.sleep(0.5)
    raise SystemExit(f"{size}: the session never ended")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=25)
    ap.add_argument("--sizes", default="1080p30,1080p60,1440p30,2160p30,2160p60")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.sizes = 4, "360p30"
    sizes = args.sizes.split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"unknown sizes {unknown}; known: {', '.join(SIZES)}")
    common.require("ffmpeg")
    common.cleanup_on_exit()
    for size in sizes:
        source(size)
    machine = common.machine()
    work = tempfile.mkdtemp(prefix="pulse-capacity-")
    rows = []
    server = None
    try:
        server = PulseServer(work)
        for size in sizes:
            rows.append((size,) + run(server, size, args.seconds))
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"### Real-time speed of the default ladder — {common.now_utc()}\n")
    print(f"Machine: {machine}  \nCommand: `python3 bench/capacity.py "
          f"{'--quick' if args.quick else f'--seconds {args.seconds} --sizes {args.sizes}'}`\n")
    print("| source | server CPU (cores) | part lag p95 (ms) | part lag max (ms) | sustained in real time |")
    print("|---|---|---|---|---|")
    for size, cores, p95, mx in rows:
        ok = p95 < 500 and mx < 1500
        print(f"| {size} | {cores:.2f} | {p95:.0f} | {mx:.0f} | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
