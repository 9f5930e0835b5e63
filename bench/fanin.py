#!/usr/bin/env python3
"""Issue 3, figure 5: passthrough ingest fan-in, Pulse Edge against nginx-rtmp, in one session.

N concurrent RTMP publishers (ffmpeg `-re -stream_loop -1 -c copy` of one pre-encoded 720p30
x264 3 Mbit/s file with a 2 s GOP and AAC, made once in bench/.cache) go into
  * Pulse Edge's `passthrough` profile: no transcode, LL-HLS packaging (CMAF parts) and AES-128
    encryption, media copied to the data dir's object store;
  * nginx + nginx-rtmp (nginx/rtmp-baseline/passthrough.conf.template): `on_publish` auth and
    plain HLS (MPEG-TS, 2 s fragments) from the published stream, no exec, no encryption.
Each (N, side) run gets a fresh server. Publisher starts are staggered (50 ms apart, at most
5 s in all). After a warm-up, over a window:
  * server CPU: utime+stime of the server's process tree (Pulse: one process; nginx: master +
    worker) over the window / wall time, in cores and per stream;
  * server RSS: the tree's peak over the window, and per stream = (peak - idle RSS before any
    publisher) / N;
  * liveness. Pulse: every media playlist of every stream is read at the start and the end of the
    window; its live edge is the newest segment's PROGRAM-DATE-TIME plus the parts after it. A
    stream is behind when its edge lags real time by more than 1.5 s beyond the median stream, or
    advanced less than (window - 1.5 s). nginx: the playlist is read at both ends; a stream is
    behind when its newest segment advanced by less than (window - 1.5 s - one 2 s fragment) of
    media (the fragment is its publishing granularity).
  * publishers that exited during the run, and the publishers' own CPU. The publishers run on the
    same 2 cores as the server: their CPU is NOT included in the server's figures.
Sides alternate within each N (and their order flips per repeat).

Usage: python3 bench/fanin.py [--counts 1,10,50,100] [--repeats N] [--seconds S] [--warmup S]
                              [--no-nginx] [--quick]
Needs: target/release/pulse-edge, ffmpeg, nginx with libnginx-mod-rtmp.  Prints a Markdown block.
"""

import argparse
import concurrent.futures
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Nginx, PulseServer, settle, stop_tree, tree_sample  # noqa: E402

FANIN_SOURCE = os.path.join(common.CACHE, "fanin-720p30-3M-20s.flv")
PASSTHROUGH_TEMPLATE = os.path.join(common.ROOT, "nginx", "rtmp-baseline", "passthrough.conf.template")
STAGGER_S = 0.05
STAGGER_MAX_S = 5.0
BEHIND_S = 1.5
NGINX_FRAGMENT_S = 2.0
RSS_TARGET_MIB = 8.0
CPU_RATIO_TARGET = 0.5


def make_fanin_source():
    """20 s of 720p30 H.264 (x264 veryfast, 3 Mbit/s capped, 2 s closed GOP, no B-frames) + AAC.
    Light noise keeps the encoder at its bitrate (testsrc2 alone is too easy to compress)."""
    if os.path.exists(FANIN_SOURCE):
        return
    os.makedirs(common.CACHE, exist_ok=True)
    tmp = FANIN_SOURCE + ".tmp.flv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "20",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
         "-bf", "0", "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "3000k", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", tmp],
        check=True)
    os.rename(tmp, FANIN_SOURCE)


def source_kbps():
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of", "csv=p=0",
                          FANIN_SOURCE], capture_output=True, text=True).stdout.strip()
    try:
        return int(out) / 1000
    except ValueError:
        return float("nan")


def fetch(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except Exception:
        return 0, ""


def parallel(fn, items, workers=16):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# ---- playlists ----------------------------------------------------------------------------

def pulse_edge(text):
    """Wall-clock time (epoch s) of the newest media in an LL-HLS playlist: the last segment's
    PROGRAM-DATE-TIME plus the duration of every EXTINF/EXT-X-PART after it. None if unreadable."""
    pdt, extra = None, 0.0
    pending_parts = 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            try:
                pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
            extra, pending_parts = 0.0, 0.0
        elif line.startswith("#EXT-X-PART:") and pdt is not None:
            m = re.search(r"DURATION=([0-9.]+)", line)
            pending_parts += float(m.group(1)) if m else 0.0
        elif line.startswith("#EXTINF:") and pdt is not None:
            # A complete segment: its EXTINF replaces the parts listed before it.
            try:
                extra += float(line.split(":", 1)[1].split(",")[0])
            except ValueError:
                return None
            pending_parts = 0.0
    if pdt is None:
        return None
    # PDT is the first segment after the tag; EXTINFs after it accumulate from that segment on.
    return pdt + extra + pending_parts


def pulse_media_urls(stream, http_port):
    status, master = fetch(stream["playback_url"])
    if status != 200:
        return []
    base = f"http://127.0.0.1:{http_port}/live/{stream['id']}/"
    uris = [l for l in master.splitlines() if l and not l.startswith("#")]
    uris += re.findall(r'URI="([^"]+)"', master)
    return [base + u for u in dict.fromkeys(uris)]


def nginx_edge(text):
    """(newest segment sequence number, its EXTINF) of a plain HLS playlist, or None."""
    seq, durations = None, []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            try:
                seq = int(line.split(":", 1)[1])
            except ValueError:
                return None
        elif line.startswith("#EXTINF:"):
            try:
                durations.append(float(line.split(":", 1)[1].split(",")[0]))
            except ValueError:
                return None
    if seq is None or not durations:
        return None
    return seq + len(durations) - 1, durations


# ---- one run ------------------------------------------------------------------------------

def start_publishers(urls):
    pubs = []
    gap = min(STAGGER_S, STAGGER_MAX_S / max(len(urls), 1))
    for url in urls:
        pubs.append(common.publish(url, loop=True, source=FANIN_SOURCE))
        time.sleep(gap)
    return pubs


def stop_publishers(pubs):
    for p in pubs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in pubs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def publishers_cpu(pubs):
    total = 0.0
    for p in pubs:
        try:
            total += common.cpu_seconds(p.pid)
        except OSError:
            pass
    return total


def tree_cpu_rss(root):
    sample = tree_sample(root)
    return sample, sum(rss for _, rss, _ in sample.values())


def window(root, pubs, seconds):
    """Server tree cores and peak RSS, publishers' cores, over `seconds`."""
    first, _ = tree_cpu_rss(root)
    last = dict(first)
    p0, t0 = publishers_cpu(pubs), time.monotonic()
    peak = 0.0
    deadline = t0 + seconds
    while True:
        now, rss = tree_cpu_rss(root)
        last.update(now)
        peak = max(peak, rss)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    elapsed = time.monotonic() - t0
    cpu = sum(c - first.get(key, (0.0,))[0] for key, (c, _, _) in last.items())
    return cpu / elapsed, peak, (publishers_cpu(pubs) - p0) / elapsed, elapsed


def run_pulse(work, n, seconds, warmup):
    server = PulseServer(work)
    pubs = []
    try:
        streams = [server.create(f"fanin-{i}-{time.time_ns()}", "passthrough") for i in range(n)]
        settle(server.pid, limit_s=5)
        _, idle = tree_cpu_rss(server.pid)
        pubs = start_publishers([f"{s['rtmp_url']}/{s['stream_key']}" for s in streams])
        time.sleep(warmup)
        urls = parallel(lambda s: pulse_media_urls(s, server.http), streams)

        def edges():
            def one(url):
                status, text = fetch(url)
                return (pulse_edge(text) if status == 200 else None), time.time()
            return [parallel(one, u) for u in urls]

        start_edges = edges()
        cores, peak, pub_cores, elapsed = window(server.pid, pubs, seconds)
        end_edges = edges()
        died = sum(1 for p in pubs if p.poll() is not None)
        # Per stream: the worst rendition's lag behind real time and advance over the window.
        lags, advances = [], []
        for s0, s1, u in zip(start_edges, end_edges, urls):
            if not u or any(e is None for e, _ in s0 + s1):
                lags.append(math.inf)
                advances.append(0.0)
                continue
            lags.append(max(at - e for e, at in s1))
            advances.append(min(e1 - e0 for (e0, _), (e1, _) in zip(s0, s1)))
        finite = [l for l in lags if math.isfinite(l)]
        median_lag = statistics.median(finite) if finite else math.inf
        behind = sum(1 for l, a in zip(lags, advances)
                     if not math.isfinite(l) or l - median_lag > BEHIND_S or a < elapsed - BEHIND_S)
        return {
            "cores": cores, "peak": peak, "idle": idle, "pub_cores": pub_cores, "died": died,
            "behind": behind, "lag_median": median_lag, "lag_max": max(lags) if lags else math.inf,
        }
    finally:
        stop_publishers(pubs)
        server.stop()


def run_nginx(work, n, seconds, warmup):
    nginx = Nginx(work, template=PASSTHROUGH_TEMPLATE)
    pubs = []
    try:
        names = [f"fanin{i}" for i in range(n)]
        settle(nginx.proc.pid, limit_s=5)
        _, idle = tree_cpu_rss(nginx.proc.pid)
        pubs = start_publishers([nginx.publish_url(name) for name in names])
        time.sleep(warmup)
        urls = [f"http://127.0.0.1:{nginx.http}/hls/{name}/index.m3u8" for name in names]

        def edges():
            return parallel(lambda u: (lambda r: nginx_edge(r[1]) if r[0] == 200 else None)(fetch(u)), urls)

        start_edges = edges()
        cores, peak, pub_cores, elapsed = window(nginx.proc.pid, pubs, seconds)
        end_edges = edges()
        died = sum(1 for p in pubs if p.poll() is not None)
        behind = 0
        for e0, e1 in zip(start_edges, end_edges):
            if e0 is None or e1 is None:
                behind += 1
                continue
            # Media added at the edge: the new segments' durations (those still listed) and the
            # median fragment for any that already left the playlist.
            (seq0, _), (seq1, durs1) = e0, e1
            new = seq1 - seq0
            listed = durs1[-new:] if 0 < new <= len(durs1) else durs1
            advance = sum(listed) + max(0, new - len(listed)) * statistics.median(durs1)
            if new <= 0 or advance < elapsed - BEHIND_S - NGINX_FRAGMENT_S:
                behind += 1
        return {
            "cores": cores, "peak": peak, "idle": idle, "pub_cores": pub_cores, "died": died,
            "behind": behind, "auth": list(nginx.auth.answers),
        }
    finally:
        stop_publishers(pubs)
        nginx.stop()


# ---- report -------------------------------------------------------------------------------

def fmt_runs(runs, fmt):
    return ", ".join(format(r, fmt) for r in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,10,50,100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=15)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--quick", action="store_true", help="N=2 on Pulse Edge only, a few seconds")
    args = ap.parse_args()
    if args.quick:
        args.counts, args.repeats, args.seconds, args.warmup, args.no_nginx = "2", 1, 3, 2.5, True
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    common.require("ffmpeg", "ffprobe", *([] if args.no_nginx else ["nginx"]))
    if not args.no_nginx and not os.path.exists(common.RTMP_MODULE):
        raise SystemExit(f"{common.RTMP_MODULE} missing (apt-get install -y --no-install-recommends libnginx-mod-rtmp)")
    common.cleanup_on_exit()
    make_fanin_source()
    machine = common.machine()
    sides = ["pulse"] + ([] if args.no_nginx else ["nginx"])
    results = {(side, n): [] for side in sides for n in counts}
    work = tempfile.mkdtemp(prefix="pulse-fanin-")
    try:
        for n in counts:
            for r in range(args.repeats):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    run = run_pulse if side == "pulse" else run_nginx
                    results[(side, n)].append(run(work, n, args.seconds, args.warmup))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    quick = " --quick" if args.quick else ""
    command = (f"python3 bench/fanin.py{quick}" if args.quick else
               f"python3 bench/fanin.py --counts {args.counts} --repeats {args.repeats} "
               f"--seconds {args.seconds:g} --warmup {args.warmup:g}" + (" --no-nginx" if args.no_nginx else ""))
    print(f"### Passthrough ingest fan-in (issue 3, figure 5) — {common.now_utc()}\n")
    print(f"Machine: {machine}  ")
    if not args.no_nginx:
        print(f"Baseline: {common.versions()}, config `nginx/rtmp-baseline/passthrough.conf.template`  ")
    print(f"Command: `{command}`  ")
    print(f"Settings: source `{os.path.basename(FANIN_SOURCE)}` ({source_kbps():.0f} kbit/s, 720p30, 2 s GOP, AAC), "
          f"looped with `ffmpeg -re -stream_loop -1 -c copy`; Pulse Edge profile `passthrough` with its default "
          f"HLS settings (AES-128 on, part target 200 ms, 2 s segments); nginx-rtmp `hls on`, 2 s fragments, no "
          f"encryption; publisher starts {STAGGER_S * 1000:.0f} ms apart (≤ {STAGGER_MAX_S:g} s); warm-up "
          f"{args.warmup:g} s after the last start; {args.seconds:g} s window; fresh server per run.\n")
    print("| figure | median | runs |\n|---|---|---|")
    failed = []
    for n in counts:
        for side in sides:
            runs = results[(side, n)]
            label = "Pulse Edge" if side == "pulse" else "nginx-rtmp"
            cores = [x["cores"] for x in runs]
            per_stream_rss = [(x["peak"] - x["idle"]) / n for x in runs]
            print(f"| N={n} {label}: server CPU (cores) | {med(cores):.3f} | {fmt_runs(cores, '.3f')} |")
            print(f"| N={n} {label}: server CPU per stream (cores) | {med(cores) / n:.4f} | "
                  f"{fmt_runs([c / n for c in cores], '.4f')} |")
            print(f"| N={n} {label}: server RSS peak (MiB) | {med([x['peak'] for x in runs]):.0f} | "
                  f"{fmt_runs([x['peak'] for x in runs], '.0f')} |")
            print(f"| N={n} {label}: RSS per stream, (peak − idle)/N (MiB) | {med(per_stream_rss):.2f} | "
                  f"{fmt_runs(per_stream_rss, '.2f')} |")
            behind = [x["behind"] for x in runs]
            died = [x["died"] for x in runs]
            print(f"| N={n} {label}: streams behind or not live / publishers died | "
                  f"{med(behind):g} / {med(died):g} | "
                  f"{', '.join(f'{b}/{d}' for b, d in zip(behind, died))} |")
            if side == "pulse":
                lm = [x["lag_median"] for x in runs]
                lx = [x["lag_max"] for x in runs]
                print(f"| N={n} {label}: live-edge lag behind wall clock, median / worst stream (s) | "
                      f"{med(lm):.2f} / {med(lx):.2f} | "
                      f"{', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(lm, lx))} |")
            pub = [x["pub_cores"] for x in runs]
            print(f"| N={n} publishers' own CPU, not in the server figures ({label} runs; cores) | "
                  f"{med(pub):.3f} | {fmt_runs(pub, '.3f')} |")
            for x in runs:
                if not all(math.isfinite(v) for v in (x["cores"], x["peak"], x["idle"])) or x["peak"] <= 0:
                    failed.append(f"{label} N={n}: no measurement")
                if x["behind"] or x["died"]:
                    failed.append(f"{label} N={n}: {x['behind']} behind, {x['died']} publishers died")
        if "nginx" in sides:
            pairs = list(zip(results[("pulse", n)], results[("nginx", n)]))
            cpu_ratios = [p["cores"] / g["cores"] if g["cores"] > 0 else math.inf for p, g in pairs]
            print(f"| **N={n} ratio Pulse / nginx, server CPU per stream** (target ≤ {CPU_RATIO_TARGET}) | "
                  f"**{med(cpu_ratios):.2f}** | {fmt_runs(cpu_ratios, '.2f')} |")
            rss_ratios = [((p["peak"] - p["idle"]) / max(g["peak"] - g["idle"], 1e-9)) for p, g in pairs]
            print(f"| N={n} ratio Pulse / nginx, RSS per stream | {med(rss_ratios):.2f} | {fmt_runs(rss_ratios, '.2f')} |")
        rss = med([(x["peak"] - x["idle"]) / n for x in results[("pulse", n)]])
        print(f"| N={n} Pulse RSS per stream / target {RSS_TARGET_MIB:g} MiB | {rss / RSS_TARGET_MIB:.2f} | |")
    print()
    if "nginx" in sides:
        answers = [a for n in counts for x in results[("nginx", n)] for a in x["auth"]]
        print(f"nginx `on_publish` answers: {len(answers)} ({answers.count(200)} × 200).  ")
    print("Server figures count only the server's process tree; the ffmpeg publishers share the same "
          "2 cores and are reported on their own rows.")
    if failed:
        print("\n**Failed:** " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
