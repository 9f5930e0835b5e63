#!/usr/bin/env python3
"""Figure 3: time to first playable media after the publish starts, Pulse Edge vs nginx-rtmp.

The clock starts when the publisher process starts (ffmpeg `-re -c copy` of the cached 1080p30
file, whose first frame is an IDR) and stops when every playlist a player would load lists
media, polled every 10 ms:
  * Pulse Edge: the signed master playlist and every media playlist it names list at least one
    EXT-X-PART; `default` profile (transcoded ladder) and `passthrough` profile.
  * nginx-rtmp: the first segment in every variant playlist of the exec-ffmpeg ladder
    (nginx/rtmp-baseline/nginx.conf.template), and in the packaging-only configuration
    (nginx/rtmp-baseline/passthrough.conf.template). It has no parts, so a segment is its
    first playable unit.
Sides alternate run by run.

Usage: python3 bench/startup.py [--repeats N] [--quick]
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Nginx, PulseServer, get, publish, settle  # noqa: E402

TIMEOUT_S = 30
NGINX_VARIANTS = ("_src", "_720p", "_480p", "_360p")  # hls_variant in nginx.conf.template
PASSTHROUGH_TEMPLATE = os.path.join(common.ROOT, "nginx", "rtmp-baseline", "passthrough.conf.template")


def media_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def wait_until(ready, pub):
    started = time.monotonic()
    try:
        while time.monotonic() - started < TIMEOUT_S:
            if ready():
                return time.monotonic() - started
            time.sleep(0.01)
        return float("nan")
    finally:
        pub.terminate()
        pub.wait()


def pulse_first_part(server, profile):
    stream = server.create(f"ttfp-{profile}-{time.time_ns()}", profile)
    base = f"http://127.0.0.1:{server.http}/live/{stream['id']}/"
    pub = publish(f"{stream['rtmp_url']}/{stream['stream_key']}")

    def ready():
        status, master = get(stream["playback_url"])
        if status != 200:
            return False
        uris = media_lines(master) + re.findall(r'URI="([^"]+)"', master)
        return bool(uris) and all("#EXT-X-PART:" in get(base + u)[1] for u in uris)

    return wait_until(ready, pub)


def nginx_first_segment(nginx, ladder):
    name = f"ttfm-{time.time_ns()}"
    base = f"http://127.0.0.1:{nginx.http}/hls/"
    pub = publish(nginx.publish_url(name))
    if ladder:
        def ready():
            status, master = get(f"{base}{name}.m3u8")
            uris = media_lines(master) if status == 200 else []
            return len(uris) == len(NGINX_VARIANTS) and all(media_lines(get(base + u)[1]) for u in uris)
    else:
        def ready():
            return bool(media_lines(get(f"{base}{name}/index.m3u8")[1]))
    return wait_until(ready, pub)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one Pulse Edge run per profile, for the smoke check")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 1
    common.require("ffmpeg", *([] if args.quick else ["nginx"]))
    common.cleanup_on_exit()
    common.make_source()
    machine = common.machine()
    work = tempfile.mkdtemp(prefix="pulse-startup-")
    runs = {k: [] for k in ("pulse-default", "pulse-passthrough", "nginx-ladder", "nginx-passthrough")}
    servers = []
    try:
        pulse = PulseServer(work)
        servers.append(pulse)
        if not args.quick:
            ladder = Nginx(work)
            servers.append(ladder)
            copy = Nginx(work, template=PASSTHROUGH_TEMPLATE)
            servers.append(copy)
        sides = list(runs) if not args.quick else ["pulse-default", "pulse-passthrough"]
        for r in range(args.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                if side.startswith("pulse"):
                    settle(pulse.pid)
                    runs[side].append(pulse_first_part(pulse, side.split("-", 1)[1]))
                else:
                    nginx = ladder if side == "nginx-ladder" else copy
                    settle(nginx.proc.pid)
                    runs[side].append(nginx_first_segment(nginx, side == "nginx-ladder"))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    measured = {k: v for k, v in runs.items() if v}
    failed = [k for k, v in measured.items() if any(x != x for x in v)]
    if failed:
        raise SystemExit(f"no playable media within {TIMEOUT_S} s: {failed} {runs}")
    med = statistics.median
    print(f"### Time to first playable media — {common.now_utc()}\n")
    print(f"Machine: {machine}  \n"
          f"Baseline: {common.versions() if not args.quick else 'not run (--quick)'}  \n"
          f"Command: `python3 bench/startup.py {'--quick' if args.quick else f'--repeats {args.repeats}'}`\n")
    print("| figure | median | runs |\n|---|---|---|")
    labels = {
        "pulse-default": "Pulse Edge, `default` ladder: first part in every rendition (s); target ≤ 1.5",
        "pulse-passthrough": "Pulse Edge, `passthrough`: first part in every rendition (s); target ≤ 1.0",
        "nginx-ladder": "nginx-rtmp + exec ffmpeg ladder: first segment in every variant (s)",
        "nginx-passthrough": "nginx-rtmp, packaging only: first segment (s)",
    }
    for key, values in measured.items():
        print(f"| {labels[key]} | {med(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    for ours, theirs in (("pulse-default", "nginx-ladder"), ("pulse-passthrough", "nginx-passthrough")):
        if measured.get(ours) and measured.get(theirs):
            ratios = [a / b for a, b in zip(measured[ours], measured[theirs])]
            print(f"| **ratio {ours} / {theirs}** | **{med(ratios):.2f}** | {', '.join(f'{r:.2f}' for r in ratios)} |")


if __name__ == "__main__":
    sys.exit(main())
