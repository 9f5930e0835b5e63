#!/usr/bin/env python3
"""Figure 4 (transcode cost) and figure 2 (part availability lag), side by side in one session.

One 1080p30 source (bench/.cache, 4.5 Mbit/s x264, 2 s GOP) on the default ladder
(1080p copied, 720p/480p/360p encoded with x264 veryfast/zerolatency):
  * Pulse Edge: CPU and RSS of the server process tree, the source looped into it with
    ffmpeg `-re -c copy`, over a window after a warm-up. The publisher is not counted.
  * nginx-rtmp + exec ffmpeg (nginx/rtmp-baseline/nginx.conf.template): the same, summed over
    nginx master + worker + the ffmpeg it execs. Same x264 settings.
  * The floor: a bare gst-launch-1.0 pipeline that only decodes, scales (the same cascade and
    scaler) and encodes the same ladder with the same x264 settings, no server. Measured two
    ways: *paced* (a `clocksync` feeds it in real time, as a live source arrives: the same
    workload the servers get) and *unpaced* (as fast as it can: cheaper per frame, because
    threads never sleep between frames). Ratios are given against both.
  * Part availability lag (listed in a playlist minus the arrival of the part's last source
    frame at the ingest), split at the encoder: the server logs, per session, the p50/p95 of
    the total, of x264's own delay, and of everything beyond the encoder.
Sides alternate run by run so that machine noise hits all alike.

Usage: python3 bench/transcode.py [--repeats N] [--seconds S] [--quick]
Needs: target/release/pulse-edge, ffmpeg, gst-launch-1.0, nginx + libnginx-mod-rtmp.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Nginx, PulseServer, settle, tree_sample  # noqa: E402

WARM_UP_S = 8
MEDIA_S = 60  # length of common.SOURCE


def measure_tree(root, url, seconds, warm_up=WARM_UP_S):
    """Cores and peak RSS of root's process tree while the source is looped into url."""
    settle(root)
    pub = common.publish(url, loop=True)
    try:
        time.sleep(warm_up)
        if pub.poll() is not None:
            raise SystemExit(f"publisher to {url} exited with {pub.returncode}")
        t0 = time.monotonic()
        first = tree_sample(root)
        last = dict(first)
        peak = 0.0
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            now = tree_sample(root)
            last.update(now)
            peak = max(peak, sum(rss for _, rss, _ in now.values()))
        elapsed = time.monotonic() - t0
        # A process that started inside the window counts from zero.
        cpu = sum(c - first.get(key, (0.0,))[0] for key, (c, _, _) in last.items())
        return cpu / elapsed, peak
    finally:
        pub.terminate()
        pub.wait()


def profile_encoder():
    """x264 and scaler settings of pipelines/default.toml, so the floor cannot drift from them."""
    import tomllib
    with open(os.path.join(common.ROOT, "pipelines", "default.toml"), "rb") as f:
        profile = tomllib.load(f)
    return profile["encoder"], profile["scaler"], profile["rung"]


def floor_pipeline(paced, seconds=None):
    enc, scaler, rungs = profile_encoder()
    x264 = (f"x264enc speed-preset={enc['speed_preset']} tune={enc['tune']} key-int-max={enc['key_int_max']} "
            f"threads={enc['threads']} ref={enc['refs']} bframes=0 vbv-buf-capacity={enc['vbv_buffer_ms']} "
            "bitrate={kbps} ! " f"video/x-h264,profile={enc['profile']} ! h264parse ! fakesink sync=false")
    # The 1080p rung is the passthrough copy in the server; the floor encodes the rest.
    encoded = [(round(r["height"] * 16 / 9 / 2) * 2, r["height"], r["bitrate_kbps"]) for r in rungs if r["height"] < 1080]
    pace = "clocksync ! " if paced else ""
    desc = (f"filesrc location={common.SOURCE} ! flvdemux name=d d.video ! queue ! {pace}h264parse ! avdec_h264 thread-type=slice ! "
            "videoconvert ! video/x-raw,format=I420 ! tee name=t0 ")
    prev = "t0"
    for i, (w, h, kbps) in enumerate(encoded):
        desc += (f"{prev}. ! queue ! videoscale method={scaler['method']} n-threads={scaler['threads']} ! "
                 f"video/x-raw,width={w},height={h} ! tee name=t{i + 1} ")
        desc += f"t{i + 1}. ! queue ! {x264.format(kbps=kbps)} "
        if scaler.get("cascade", True):
            prev = f"t{i + 1}"
    return desc


def measure_floor(paced, seconds, warm_up):
    """CPU-seconds per media-second of the bare pipeline. Paced: measured like the servers, over a
    window after a warm-up. Unpaced: the whole run over the whole 60 s source."""
    start = os.times()
    proc = subprocess.Popen(["gst-launch-1.0", "-q", "-e"] + floor_pipeline(paced).split(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cores = None
    try:
        if paced:
            time.sleep(warm_up)
            c0, t0 = common.cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            cores = (common.cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
            proc.send_signal(2)  # -e: EOS, then exit
        _, err = proc.communicate(timeout=MEDIA_S * 3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SystemExit("floor pipeline did not finish")
    if proc.returncode != 0:
        raise SystemExit(f"floor pipeline failed: {err.decode(errors='replace')[-500:]}")
    if cores is not None:
        return cores
    end = os.times()
    return ((end.children_user - start.children_user) + (end.children_system - start.children_system)) / MEDIA_S


def lag_from_log(path):
    """Per-session (p50, p95) of total lag, beyond-encoder lag, and encoder delay (ms)."""
    rows = []
    for line in open(path, errors="replace"):
        if "part availability lag" not in line:
            continue
        get = lambda k: float(m.group(1)) if (m := re.search(rf"\b{k}=([\d.]+)", line)) else float("nan")  # noqa: E731
        rows.append({k: (get(f"{k}p50_ms"), get(f"{k}p95_ms")) for k in ("", "beyond_encoder_", "encoder_")})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="one short run per side, for the smoke check")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seconds = 1, 2
    common.require("ffmpeg", "gst-launch-1.0", *([] if args.quick else ["nginx"]))
    if not args.quick and not os.path.exists(common.RTMP_MODULE):
        raise SystemExit(f"{common.RTMP_MODULE} missing (make bench installs libnginx-mod-rtmp)")
    common.cleanup_on_exit()
    common.make_source()
    machine = common.machine()
    work = tempfile.mkdtemp(prefix="pulse-transcode-")
    cpu = {k: [] for k in ("pulse", "nginx", "paced", "unpaced")}
    rss = {"pulse": [], "nginx": []}
    pulse = nginx = None
    try:
        pulse = PulseServer(work)
        nginx = None if args.quick else Nginx(work)
        # Quick: only prove the measurement path (nginx's exec ffmpeg alone takes ~6 s to start).
        sides = ["pulse", "paced"] if args.quick else ["pulse", "nginx", "paced", "unpaced"]
        for r in range(args.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                if side == "pulse":
                    stream = pulse.create(f"cpu-{time.time_ns()}", "default")
                    url = f"{stream['rtmp_url']}/{stream['stream_key']}"
                    cores, peak = measure_tree(pulse.pid, url, args.seconds, 2 if args.quick else WARM_UP_S)
                    rss["pulse"].append(peak)
                elif side == "nginx":
                    url = nginx.publish_url(f"cpu-{time.time_ns()}")
                    cores, peak = measure_tree(nginx.proc.pid, url, args.seconds, 2 if args.quick else WARM_UP_S)
                    rss["nginx"].append(peak)
                else:
                    settle(pulse.pid)
                    cores = measure_floor(side == "paced", args.seconds, 2 if args.quick else WARM_UP_S)
                cpu[side].append(cores)
        time.sleep(1)  # the last session's lag line is written when its publisher has gone
        lags = lag_from_log(pulse.log_path)
    finally:
        if nginx:
            nginx.stop()
        if pulse:
            pulse.stop()
        shutil.rmtree(work, ignore_errors=True)

    bad = [k for k, v in cpu.items() if any(x != x or x <= 0 for x in v)] + \
        [k for k in ("pulse", "paced") if not cpu[k]]
    if bad or not lags:
        raise SystemExit(f"measurement failed: cpu {cpu}, lag rows {len(lags)}")
    med = statistics.median

    def row(label, runs, fmt):
        if not runs:
            return
        print(f"| {label} | {format(med(runs), fmt)} | {', '.join(format(r, fmt) for r in runs)} |")

    def ratio_row(label, a, b):
        if not a or not b:
            return
        ratios = [x / y for x, y in zip(a, b)]
        print(f"| **{label}** | **{med(ratios):.2f}** | {', '.join(f'{r:.2f}' for r in ratios)} |")

    enc, scaler, _ = profile_encoder()
    print(f"### Transcode cost and part lag, 1080p30 on the default ladder — {common.now_utc()}\n")
    print(f"Machine: {machine}  \nBaseline: {common.versions() if nginx else 'not run (--quick)'}  \n"
          f"x264 (all sides): {enc['speed_preset']}, tune {enc['tune']}, {enc['profile']}, ref {enc['refs']}, "
          f"no B-frames, threads {enc['threads']}, VBV {enc['vbv_buffer_ms']} ms; scaler {scaler['method']}"
          f"{' cascade' if scaler.get('cascade', True) else ''} (Pulse and floor)  \n"
          f"Command: `python3 bench/transcode.py {'--quick' if args.quick else f'--repeats {args.repeats} --seconds {args.seconds}'}`\n")
    print("| figure | median | runs |\n|---|---|---|")
    row("Pulse Edge server tree (cores)", cpu["pulse"], ".3f")
    row("nginx-rtmp + exec ffmpeg tree (cores)", cpu["nginx"], ".3f")
    row("floor, paced to real time (CPU-s per media-s)", cpu["paced"], ".3f")
    if cpu["unpaced"]:
        row("floor, unpaced (CPU-s per media-s)", cpu["unpaced"], ".3f")
    ratio_row("Pulse / nginx (target ≤ 0.8)", cpu["pulse"], cpu["nginx"])
    ratio_row("Pulse / paced floor (target ≤ 1.05)", cpu["pulse"], cpu["paced"])
    if cpu["unpaced"]:
        ratio_row("Pulse / unpaced floor", cpu["pulse"], cpu["unpaced"])
    row("Pulse Edge RSS peak (MiB)", rss["pulse"], ".0f")
    row("nginx + ffmpeg RSS peak (MiB)", rss["nginx"], ".0f")
    ratio_row("Pulse / nginx, RSS", rss["pulse"], rss["nginx"])
    for key, label in (("", "total"), ("encoder_", "x264's own delay"), ("beyond_encoder_", "beyond the encoder")):
        p50 = [r[key][0] for r in lags]
        p95 = [r[key][1] for r in lags]
        print(f"| part availability lag, {label}: p50 / p95 per session (ms) | {med(p50):.0f} / {med(p95):.0f} | "
              f"{'; '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(p50, p95))} |")
    print("\nLag target: p95 beyond the encoder ≤ 50 ms. Lag rows are per Pulse session (one per CPU run), "
          "over every rendition's parts (the 1080p copy has no encoder share).")


if __name__ == "__main__":
    sys.exit(main())
