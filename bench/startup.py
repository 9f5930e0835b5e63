#!/usr/bin/env python3
"""First figures for the spine, measured side by side in one session.

  * time from publish start to the first playable part (ladder and passthrough);
  * server-side part availability lag (from the server's own per-session log line);
  * CPU cores and RSS of the server for one 1080p30 source on the default ladder,
    against the *floor*: a bare gst-launch-1.0 pipeline doing only the same
    decode + scale + encode, with no server, over the same source.

Usage: python3 bench/spine.py [--repeats N] [--seconds S]
Needs: target/release/pulse-edge, ffmpeg, gst-launch-1.0.  Prints a Markdown block.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pulse-edge")
CACHE = os.path.join(ROOT, "bench", ".cache")
SOURCE = os.path.join(CACHE, "src-1080p30-60s.flv")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_source():
    """60 s of 1080p30 H.264 (x264 veryfast, 2 s GOP, no B-frames) + AAC, made once."""
    if os.path.exists(SOURCE):
        return
    os.makedirs(CACHE, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "60",
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "60", "-bf", "0",
         "-b:v", "4500k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", SOURCE + ".tmp.flv"],
        check=True)
    os.rename(SOURCE + ".tmp.flv", SOURCE)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, workdir):
        self.data = tempfile.mkdtemp(dir=workdir)
        self.http = free_port()
        self.rtmp = free_port()
        self.env = dict(os.environ, PULSE_DATA_DIR=self.data, PULSE_HTTP_LISTEN=f"127.0.0.1:{self.http}",
                        PULSE_RTMP_LISTEN=f"127.0.0.1:{self.rtmp}",
                        PULSE_PIPELINES_DIR=os.path.join(ROOT, "pipelines"), RUST_LOG="info")
        self.log_path = os.path.join(self.data, "server.log")
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, cwd=self.data,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.http), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.rtmp), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("server did not start:\n" + open(self.log_path).read())

    def create(self, name, profile=None):
        args = [BIN, "stream", "create", "--name", name] + (["--profile", profile] if profile else [])
        out = subprocess.run(args, env=self.env, cwd=self.data, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def publish(url, loop=False):
    args = ["ffmpeg", "-v", "error", "-re"] + (["-stream_loop", "-1"] if loop else []) + \
        ["-i", SOURCE, "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except Exception:
        return 0, ""


def time_to_first_part(server, profile):
    stream = server.create(f"ttfp-{profile}-{time.time_ns()}", profile)
    base = f"http://127.0.0.1:{server.http}/live/{stream['id']}/"
    started = time.monotonic()
    pub = publish(f"{stream['rtmp_url']}/{stream['stream_key']}")
    try:
        while time.monotonic() - started < 20:
            status, master = get(stream["playback_url"])
            if status == 200:
                uris = [l for l in master.splitlines() if l and not l.startswith("#")]
                uris += re.findall(r'URI="([^"]+)"', master)
                if uris and all("#EXT-X-PART:" in get(base + u)[1] for u in uris):
                    return time.monotonic() - started
            time.sleep(0.01)
        return float("nan")
    finally:
        pub.terminate()
        pub.wait()


def measure_server_cpu(server, seconds):
    stream = server.create(f"cpu-{time.time_ns()}", "default")
    pub = publish(f"{stream['rtmp_url']}/{stream['stream_key']}", loop=True)
    try:
        time.sleep(8)  # warm-up: ladder built, encoders at steady state
        pid = server.proc.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            peak = max(peak, rss_mib(pid))
        cores = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        return cores, peak
    finally:
        pub.terminate()
        pub.wait()


def floor_pipeline():
    """The same decode + cascaded scale + x264 encode as pipelines/default.toml for a
    1080p source (passthrough top rung, so 720p/480p/360p are encoded), and nothing else."""
    enc = ("x264enc speed-preset=veryfast tune=zerolatency key-int-max=600 ref=1 vbv-buf-capacity=1000 "
           "bitrate={kbps} ! video/x-h264,profile=high ! h264parse ! fakesink sync=false")
    rungs = [(1280, 720, 2500), (854, 480, 1000), (640, 360, 600)]
    desc = f"filesrc location={SOURCE} ! flvdemux name=d d.video ! queue ! h264parse ! avdec_h264 ! " \
           "videoconvert ! video/x-raw,format=I420 ! tee name=t0 "
    prev = "t0"
    for i, (w, h, kbps) in enumerate(rungs):
        desc += f"{prev}. ! queue ! videoscale method=bilinear ! video/x-raw,width={w},height={h} ! tee name=t{i + 1} "
        desc += f"t{i + 1}. ! queue ! {enc.format(kbps=kbps)} "
        prev = f"t{i + 1}"
    return desc


def measure_floor():
    """CPU-seconds per second of media for the bare pipeline over the 60 s source."""
    start = os.times()
    subprocess.run(["gst-launch-1.0", "-q"] + floor_pipeline().split(), check=True,
                   stdout=subprocess.DEVNULL)
    end = os.times()
    cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
    return cpu / 60.0


def lag_from_log(server):
    """The server logs per-session part availability lag percentiles; take the last."""
    text = open(server.log_path).read()
    found = re.findall(r"part availability lag.*?p50_ms=([\d.]+).*?p95_ms=([\d.]+)", text)
    return [(float(a), float(b)) for a, b in found]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=40)
    args = ap.parse_args()
    for tool in ("ffmpeg", "gst-launch-1.0"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (run `make test-deps`)")
    if not os.path.exists(BIN):
        raise SystemExit("build first: make release")
    make_source()
    work = tempfile.mkdtemp(prefix="pulse-bench-")
    server = Server(work)
    try:
        ttfp = {p: [time_to_first_part(server, p) for _ in range(args.repeats)] for p in ("default", "passthrough")}
        cpu_runs, floor_runs, rss = [], [], []
        for _ in range(args.repeats):
            cores, peak = measure_server_cpu(server, args.seconds)
            cpu_runs.append(cores)
            rss.append(peak)
            floor_runs.append(measure_floor())
        lags = lag_from_log(server)
    finally:
        server.stop()
    med = statistics.median
    ratios = [c / f for c, f in zip(cpu_runs, floor_runs)]
    print(f"### Spine figures — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"Machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{platform.platform()}  \nCommand: `python3 bench/spine.py --repeats {args.repeats} --seconds {args.seconds}`\n")
    print("| figure | median | runs |\n|---|---|---|")
    for p, runs in ttfp.items():
        print(f"| time to first playable part, `{p}` profile (s) | {med(runs):.2f} | {', '.join(f'{r:.2f}' for r in runs)} |")
    print(f"| server CPU, 1080p30 on `default` (cores) | {med(cpu_runs):.3f} | {', '.join(f'{r:.3f}' for r in cpu_runs)} |")
    print(f"| floor: bare gst-launch decode+scale+encode (CPU-s per media-s) | {med(floor_runs):.3f} | {', '.join(f'{r:.3f}' for r in floor_runs)} |")
    print(f"| **ratio server / floor** | **{med(ratios):.2f}** | {', '.join(f'{r:.2f}' for r in ratios)} |")
    print(f"| server RSS peak (MiB) | {med(rss):.0f} | {', '.join(f'{r:.0f}' for r in rss)} |")
    if lags:
        print(f"| part availability lag p50 / p95 (ms), per session | {med(l[0] for l in lags):.1f} / {med(l[1] for l in lags):.1f} | "
              f"{'; '.join(f'{a:.0f}/{b:.0f}' for a, b in lags)} |")


if __name__ == "__main__":
    sys.exit(main())
