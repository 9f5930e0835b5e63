#!/usr/bin/env python3
"""WHIP ingest figures (issue 7): glass-to-glass latency of a browser publisher, and the
server's CPU cost of the WebRTC receive path against RTMP at the same bitrate.

Method
------
* **Latency.** One Pulse Edge (release binary, `small` profile: 360p top rung + 240p/160p
  encodes, default part target). Per repeat, three publishers in turn, each on a fresh stream,
  all 640x360 at 30 fps, ~1 Mbit/s, carrying the same burned-in capture-time stamp
  (tests/player/glass-page.js reads it; see bench/latency.py for the layout):
  - `rtmp`: ffmpeg (testsrc2 paced by `realtime`, wall-clock timestamps, stamp drawn by `geq`),
    libx264 ultrafast/zerolatency, 2 s GOP, no B-frames, AAC; pushed over RTMP.
  - `whip-h264`: headless Chromium (tests/player/whip.mjs --source stamp): the stamp is drawn
    on a canvas every frame from `Date.now()` and the canvas captured (`captureStream`), plus
    the fake microphone; OpenH264 capped at 1 Mbit/s (`maxBitrate`); WHIP. H.264 is copied into
    the 360p rung, as from RTMP.
  - `whip-vp8`: the same with VP8 (libvpx): every rung is decoded and encoded.
  The player is tests/player/glass.mjs (hls.js, low-latency mode, `maxLiveSyncPlaybackRate`
  1.5, level locked to 360p) joining after `--warmup` seconds; latency = `Date.now()` at a
  presented frame minus the stamp. The canvas stamp is taken when the frame is drawn, up to one
  frame (33 ms) before Chromium captures it; ffmpeg's is taken when lavfi produces the frame.
  Both publishers and the player run on this machine, so one clock serves all.
  Row figure = median over repeats of each session's median; ratio WHIP / RTMP per repeat.
* **CPU.** Profile `passthrough` (the top rung copied, no encode), so that what the server does
  is ingest + packaging: `whip-h264` (Chromium, 1 Mbit/s cap; its rate control sends what it
  decides under the cap) first, then `rtmp` (ffmpeg x264, stamp kept) at the bitrate the WHIP run
  reached, so both carry the same bitrate. After `--warmup`, the server's CPU-seconds (utime +
  stime of its process) over `--cpu-seconds`, and the video+audio bytes it took in over the
  same window (admin API `/live` `ingest_bytes`: payload bytes for WHIP, FLV/chunk bytes for
  RTMP, so RTMP's figure includes ~1-2 % framing). Reported as server cores per stream and as
  cores per Mbit/s received; ratio WHIP / RTMP per repeat (WHIP runs first in every repeat,
  because RTMP's bitrate is set from it).

Usage: python3 bench/whip.py [--repeats 3] [--seconds 20] [--warmup 8] [--cpu-seconds 30]
       python3 bench/whip.py --quick        (one short WHIP latency session, <= 60 s)
Needs: target/release/pulse-edge (or PULSE_BENCH_BIN), ffmpeg, node + tests/player/node_modules,
/usr/bin/chromium.  Prints Markdown.
"""

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import latency  # noqa: E402

WHIP = os.path.join(common.ROOT, "tests", "player", "whip.mjs")
WIDTH, HEIGHT, FPS, KBPS = 640, 360, 30, 1000
STRIP_H = round(HEIGHT * latency.STRIP_H / 1080)


def ffmpeg_stamped(url, kbps=KBPS):
    """The RTMP publisher: bench/latency.py's stamp, at 640x360 and `kbps`."""
    graph = ("[0:v]split[main][s];"
             f"[s]crop={latency.CELLS}:2:0:0,geq=lum='{latency.stamp_expr()}':cb=128:cr=128,"
             f"scale={WIDTH}:{STRIP_H}:flags=neighbor[strip];"
             f"[main][strip]overlay=0:0,setpts=N/{FPS}/TB[v]")
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-copyts", "-use_wallclock_as_timestamps", "1",
            "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS},realtime,settb=1/1000",
            "-re", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-filter_complex", graph, "-map", "[v]", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(2 * FPS),
            "-keyint_min", str(2 * FPS), "-sc_threshold", "0", "-bf", "0", "-b:v", f"{kbps}k",
            "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k", "-pix_fmt", "yuv420p", "-r", str(FPS),
            "-c:a", "aac", "-b:a", "64k", "-f", "flv", url]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


def chromium_whip(server, key, codec, seconds, log_path):
    args = ["node", WHIP, f"http://127.0.0.1:{server.http}/whip", "--key", key, "--seconds", str(seconds),
            "--codec", codec, "--source", "stamp", "--width", str(WIDTH), "--height", str(HEIGHT),
            "--fps", str(FPS), "--max-kbps", str(KBPS)]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def start_publisher(server, stream, side, seconds, work, kbps=KBPS):
    if side == "rtmp":
        return ffmpeg_stamped(f"{stream['rtmp_url']}/{stream['stream_key']}", kbps)
    return chromium_whip(server, stream["stream_key"], side.split("-")[1], seconds,
                         os.path.join(work, f"{stream['id']}-whip.log"))


def stop(proc):
    if proc.poll() is None:
        common.stop_tree(proc, signal.SIGTERM)


def live_entry(server, token, stream_id):
    req = urllib.request.Request(f"http://127.0.0.1:{server.http}/api/v1/live",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return next((s for s in json.load(resp) if s["stream_id"] == stream_id), None)


def admin_token(server):
    out = subprocess.run([common.BIN, "admin-token", "create", "--name", "bench"], env=server.env,
                         cwd=server.data, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["secret"]


def latency_session(server, side, args, work):
    stream = server.create(f"glass-{side}-{time.time_ns()}", "small")
    url = stream["playback_url"]
    base = f"http://127.0.0.1:{server.http}/live/{stream['id']}/"
    pub = start_publisher(server, stream, side, args.warmup + args.seconds + 60, work)
    try:
        if latency.wait_live(url, base, r"^#EXT-X-PART:", timeout=30) is None:
            raise SystemExit(f"{side}: never went live")
        time.sleep(args.warmup)
        report, cpu, _ = latency.run_player(url, args.seconds, "catchup", 360,
                                            {"server": server.proc.pid, "publisher": pub.pid}, "/nonexistent")
    finally:
        stop(pub)
    summary = report.get("summary") or {}
    return {"side": side, "latency": (summary.get("latency") or {}).get("median", float("nan")),
            "hls": (summary.get("hlsLatency") or {}).get("median", float("nan")),
            "stamps": summary.get("stamps", 0), "stalls": summary.get("stallCount"),
            "cpu": cpu, "errors": report.get("harnessErrors", [])}


def cpu_session(server, token, side, args, work, kbps=KBPS):
    stream = server.create(f"cpu-{side}-{time.time_ns()}", "passthrough")
    base = f"http://127.0.0.1:{server.http}/live/{stream['id']}/"
    pub = start_publisher(server, stream, side, args.warmup + args.cpu_seconds + 60, work, kbps)
    try:
        if latency.wait_live(stream["playback_url"], base, r"^#EXT-X-PART:", timeout=30) is None:
            raise SystemExit(f"{side}: never went live")
        time.sleep(args.warmup)
        entry0, cpu0, t0 = live_entry(server, token, stream["id"]), common.cpu_seconds(server.proc.pid), time.monotonic()
        time.sleep(args.cpu_seconds)
        entry1, cpu1, t1 = live_entry(server, token, stream["id"]), common.cpu_seconds(server.proc.pid), time.monotonic()
    finally:
        stop(pub)
    secs = t1 - t0
    mbps = (entry1["ingest_bytes"] - entry0["ingest_bytes"]) * 8 / secs / 1e6
    cores = (cpu1 - cpu0) / secs
    return {"side": side, "cores": cores, "mbps": mbps, "per_mbps": cores / mbps if mbps else float("nan"),
            "fps": entry1.get("frames_received", 0)}


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--cpu-seconds", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    common.cleanup_on_exit()
    common.require("ffmpeg", "node", "chromium")
    command = "python3 bench/whip.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    load_before = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="whip-bench-")
    server = common.PulseServer(work)
    try:
        if args.quick:
            args.seconds, args.warmup = 4, 2
            r = latency_session(server, "whip-vp8", args, work)
            print(f"quick: WHIP (VP8) glass-to-glass median {r['latency']:.2f} s over {r['stamps']} stamps")
            if not r["stamps"]:
                raise SystemExit(f"no stamp read: {r}")
            return
        token = admin_token(server)
        lat, cpu = [], []
        sides = ["rtmp", "whip-h264", "whip-vp8"]
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else list(reversed(sides))
            for side in order:
                lat.append(dict(latency_session(server, side, args, work), repeat=repeat))
            # Chromium's rate control decides what it sends under the 1 Mbit/s cap; RTMP then
            # sends at the bitrate WHIP reached, so both sides carry the same bitrate.
            whip_run = cpu_session(server, token, "whip-h264", args, work)
            kbps = max(100, round(whip_run["mbps"] * 1000))
            cpu.append(dict(whip_run, repeat=repeat))
            cpu.append(dict(cpu_session(server, token, "rtmp", args, work, kbps), repeat=repeat))
    finally:
        server.stop()

    print(f"## WHIP ingest ({common.now_utc()})\n")
    print(f"Command: `{command}`  \nMachine: {common.machine()} (load before start {load_before:.2f})\n")
    print("### Glass-to-glass latency, publisher to hls.js (360p level, `small` profile)\n")
    print("| publisher | median latency (s) | runs | ratio to RTMP (per repeat) | hls.js latency (s) | stalls |")
    print("|---|---|---|---|---|---|")
    rtmp = {r["repeat"]: r["latency"] for r in lat if r["side"] == "rtmp"}
    for side in ["rtmp", "whip-h264", "whip-vp8"]:
        rows = [r for r in lat if r["side"] == side]
        ratios = [r["latency"] / rtmp[r["repeat"]] for r in rows if rtmp.get(r["repeat"])]
        runs = latency.fmt_runs([r["latency"] for r in rows])
        print(f"| {side} | {med([r['latency'] for r in rows]):.2f} | {runs} | {latency.fmt_runs(ratios)} | "
              f"{med([r['hls'] for r in rows]):.2f} | {sum((r['stalls'] or 0) for r in rows)} |")
    print("\n### Server CPU per stream, `passthrough` profile (~1 Mbit/s H.264 640x360 30 fps)\n")
    print("| ingest | server cores | Mbit/s received | cores per Mbit/s | ratio to RTMP (per repeat) |")
    print("|---|---|---|---|---|")
    base = {r["repeat"]: r["cores"] for r in cpu if r["side"] == "rtmp"}
    for side in ["rtmp", "whip-h264"]:
        rows = [r for r in cpu if r["side"] == side]
        ratios = [r["cores"] / base[r["repeat"]] for r in rows if base.get(r["repeat"])]
        runs = latency.fmt_runs([r["cores"] for r in rows], ".3f")
        print(f"| {side} | {med([r['cores'] for r in rows]):.3f} ({runs}) | {med([r['mbps'] for r in rows]):.2f} | "
              f"{med([r['per_mbps'] for r in rows]):.3f} | {latency.fmt_runs(ratios)} |")


if __name__ == "__main__":
    main()
