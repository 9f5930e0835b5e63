#!/usr/bin/env python3
"""Figure 7: memory over time. One 1080p30 source looped into the default ladder for a long
stream; RSS of the server sampled every few seconds. Growth = last sample against the sample at
the end of the settle period (the issue's target: ≤ 2 % after the first 5 minutes of a 30-minute
stream). The same is measured for nginx-rtmp + exec ffmpeg over the same duration, after ours.

Usage: python3 bench/soak.py [--minutes 30] [--settle-minutes 5] [--quick]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Nginx, PulseServer, publish, settle, tree_sample  # noqa: E402


def tree_rss(root):
    return sum(rss for _, rss, _ in tree_sample(root).values())


def soak(root, url, seconds, settle_s, every_s):
    """[(t, rss_mib)] while the source is looped into url; fails if the publisher dies."""
    settle(root)
    pub = publish(url, loop=True)
    samples = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(every_s)
            if pub.poll() is not None:
                raise SystemExit(f"publisher exited with {pub.returncode} after {time.monotonic() - t0:.0f} s")
            samples.append((time.monotonic() - t0, tree_rss(root)))
    finally:
        pub.terminate()
        pub.wait()
    settled = [rss for t, rss in samples if t >= settle_s]
    if len(settled) < 2:
        raise SystemExit("too few samples after the settle period")
    return samples, settled


def describe(samples, settled):
    base, last, peak = settled[0], settled[-1], max(settled)
    return {"at_settle": base, "last": last, "peak": peak, "growth": (last - base) / base * 100,
            "peak_growth": (peak - base) / base * 100, "n": len(samples)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--settle-minutes", type=float, default=5)
    ap.add_argument("--every", type=float, default=5, help="seconds between samples")
    ap.add_argument("--no-baseline", action="store_true", help="skip the nginx-rtmp run")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.settle_minutes, args.every, args.no_baseline = 6 / 60, 2 / 60, 1, True
    common.require("ffmpeg", *([] if args.no_baseline else ["nginx"]))
    common.cleanup_on_exit()
    common.make_source()
    machine = common.machine()
    seconds, settle_s = args.minutes * 60, args.settle_minutes * 60
    work = tempfile.mkdtemp(prefix="pulse-soak-")
    results = {}
    servers = []
    try:
        pulse = PulseServer(work)
        servers.append(pulse)
        stream = pulse.create(f"soak-{time.time_ns()}", "default")
        results["Pulse Edge"] = describe(*soak(pulse.pid, f"{stream['rtmp_url']}/{stream['stream_key']}",
                                               seconds, settle_s, args.every))
        pulse.stop()
        if not args.no_baseline:
            nginx = Nginx(work)
            servers.append(nginx)
            results["nginx-rtmp + exec ffmpeg"] = describe(*soak(nginx.proc.pid, nginx.publish_url("soak"),
                                                                 seconds, settle_s, args.every))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    command = "--quick" if args.quick else f"--minutes {args.minutes:g} --settle-minutes {args.settle_minutes:g}" + \
        (" --no-baseline" if args.no_baseline else "")
    print(f"### Memory over time, 1080p30 on the default ladder — {common.now_utc()}\n")
    print(f"Machine: {machine}  \nCommand: `python3 bench/soak.py {command}`  \n"
          f"{args.minutes:g}-minute stream, RSS of the server process tree every {args.every:g} s; growth is the last "
          f"sample against the first one after {args.settle_minutes:g} min (target ≤ 2 %).\n")
    print("| server | RSS at settle (MiB) | last (MiB) | peak (MiB) | growth | peak growth | samples |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['at_settle']:.0f} | {r['last']:.0f} | {r['peak']:.0f} | {r['growth']:+.1f} % | "
              f"{r['peak_growth']:+.1f} % | {r['n']} |")


if __name__ == "__main__":
    sys.exit(main())
