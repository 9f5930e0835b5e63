#!/usr/bin/env python3
"""Glass-to-glass latency in a real player (issue 3, figure 1): Pulse Edge vs nginx-rtmp.

Method
------
* **Publisher** (one per run, same for both servers): ffmpeg generating a synthetic 1080p30
  picture (`testsrc2`) paced to real time by lavfi's `realtime` filter and read with
  `-use_wallclock_as_timestamps 1 -copyts` (time base 1 ms), so every frame's pts is the wall
  clock at the instant ffmpeg took the frame from the source: the "capture" time. (`-re` cannot
  pace such an input: it compares the wall clock with itself and lets frames through at once.)
  A `geq` filter on a 32x2 crop draws that pts into 32 bits, scaled up with nearest-neighbour to a
  1920x72 strip of black/white cells overlaid on the top of the picture: 24 bits of the capture
  time in ms modulo 2^24 (4.66 h), most significant first, then an 8-bit check
  c = (b0 + 3*b1 + 7*b2 + 90) mod 256 over the three time bytes, which catches any single-bit
  misread. Then `setpts=N/30/TB` makes the output timestamps plain CFR from 0, as an encoder's
  would be. Encoded as OBS would: libx264 veryfast/zerolatency, 2 s GOP (no scene-cut keyframes),
  no B-frames, 4.5 Mbit/s, AAC 128 kbit/s from a sine; pushed over RTMP.
  The publisher's x264 preset is `ultrafast` by default (`--publisher-preset veryfast` for OBS's
  default): measured alone, the veryfast publisher costs 0.69 cores and the ultrafast one 0.41;
  with veryfast, publisher + server ladder (~0.8) + Chromium decoding 1080p (~0.55) saturated the
  2 cores and the publisher fell to ~21 fps. Resolution, GOP, bitrate and frame rate are unchanged,
  both servers get the same stream, and every session prints the publisher's achieved frame rate.
  `--verify-stamp` checks the stamp: every frame decoded from the publisher's output (as
  published, and after scaling to 360p at 600 kbit/s like the lowest rung) is read back with the
  same algorithm as the player and compared with the capture time ffmpeg logged for that frame.
* **Player**: tests/player/glass.mjs — hls.js 1.7.4 in Debian's headless Chromium on loopback,
  page on its own origin (so the stream is fetched cross-origin, CORS and all). On a presented
  frame (`requestVideoFrameCallback`) about once a second, the frame is drawn to a canvas, the
  stamp decoded, and latency = Date.now() - capture time recorded, with hls.js's own `latency`
  and `targetLatency`, the level playing, the presented height, stalls and dropped frames.
  Sampling starts at the first presented frame and lasts `--seconds`; a run's figure is the
  median of its samples (join transients included), the row's figure the median of the runs.
* **Servers**: Pulse Edge (release binary, `default` profile = 1080p passthrough + 720/480/360
  x264 rungs, default part target; PART-TARGET and hold-backs are read from the media playlist)
  and nginx-rtmp + exec ffmpeg (nginx/rtmp-baseline/nginx.conf.template: same ladder, plain HLS
  with 2 s fragments, variant playlist). Each run: a fresh stream, the publisher, `--warmup`
  seconds (so the player joins an established stream, as a viewer would), then one player
  session per (player config x level) on that same stream. Levels are locked in hls.js
  (`startLevel`/`loadLevel` on MANIFEST_PARSED): 1080 = the source (Pulse's passthrough rung,
  nginx's `_src` copy), 720 = a transcoded rung (decode + scale + x264 in the path).
* **Player configs**: `defaults` = hls.js defaults + `lowLatencyMode: true`; `catchup` = the same
  plus `maxLiveSyncPlaybackRate: 1.5` (hls.js's default 1 never speeds up to reach its target
  latency), a setting a real deployment would use. Both servers get the same player config.
* Sides alternate run by run; medians of per-run medians; ratio Pulse / nginx per repeat.
  CPU of the publisher, each server's process tree, the player (node + Chromium) and the whole
  machine is measured over every player session and printed, because on 2 cores a 1080p x264
  publisher + the ladder + a 1080p software-decoding browser can saturate the machine.

Usage: python3 bench/latency.py [--repeats 3] [--seconds 60] [--warmup 12]
                                [--players defaults,catchup] [--levels 1080,720]
                                [--publisher-preset ultrafast] [--json out.json]
       python3 bench/latency.py --quick           (one ~3 s Pulse-only session, <= 30 s)
       python3 bench/latency.py --verify-stamp    (checks the burned-in stamp, no server)
Needs: target/release/pulse-edge, ffmpeg, node + tests/player/node_modules (npm ci --prefix
tests/player), /usr/bin/chromium, nginx + libnginx-mod-rtmp (full mode).  Prints Markdown.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

GLASS = os.path.join(common.ROOT, "tests", "player", "glass.mjs")
NODE_MODULES = os.path.join(common.ROOT, "tests", "player", "node_modules")
CELLS, TIME_BITS, STRIP_H = 32, 24, 72  # the stamp; glass-page.js must agree
MODULUS = 1 << TIME_BITS
PLAYERS = {
    "defaults": {},
    "catchup": {"maxLiveSyncPlaybackRate": 1.5},
}
NGINX_VARIANTS = 4  # _src, _720p, _480p, _360p in the template
LIVE_TIMEOUT_S = 30


# ---- the stamped publisher ------------------------------------------------------------------

def stamp_expr():
    """geq luma for a 32-pixel-wide row: pixel X is bit X (MSB first) of time24 << 8 | check,
    where time24 is the frame's pts (the capture wall clock, 1 ms time base) in ms mod 2^24."""
    t = f"mod(floor(T*1000+0.5),{MODULUS})"
    check = "mod(mod(ld(0),256)+3*mod(floor(ld(0)/256),256)+7*floor(ld(0)/65536)+90,256)"
    bit = (f"if(lt(X,{TIME_BITS}),mod(floor(ld(0)/pow(2,{TIME_BITS - 1}-X)),2),"
           f"mod(floor(ld(1)/pow(2,{CELLS - 1}-X)),2))")
    return f"st(0,{t});st(1,{check});255*{bit}"


def publisher_args(preset, out, fmt="flv", audio=True, log_frames=False, progress=None):
    graph = ("[0:v]" + ("showinfo," if log_frames else "") + "split[main][s];"
             f"[s]crop={CELLS}:2:0:0,geq=lum='{stamp_expr()}':cb=128:cr=128,"
             f"scale=1920:{STRIP_H}:flags=neighbor[strip];"
             "[main][strip]overlay=0:0,setpts=N/30/TB[v]")
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info" if log_frames else "error",
            "-copyts", "-use_wallclock_as_timestamps", "1",
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,realtime,settb=1/1000"]
    if audio:
        args += ["-re", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]
    args += ["-filter_complex", graph, "-map", "[v]"] + (["-map", "1:a"] if audio else []) + [
        "-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-bf", "0", "-b:v", "4500k", "-pix_fmt", "yuv420p", "-r", "30"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "128k"]
    else:
        args += ["-an"]
    if progress:
        args += ["-progress", progress, "-stats_period", "1"]
    return args + ["-f", fmt, out]


def publish_stamped(url, preset, progress):
    return subprocess.Popen(publisher_args(preset, url, progress=progress), stdin=subprocess.DEVNULL)


def publisher_speed(progress):
    """(frames, speed) from the publisher's last -progress block."""
    try:
        text = open(progress).read()
    except OSError:
        return 0, float("nan")
    frames = re.findall(r"^frame=(\d+)", text, re.M)
    speeds = re.findall(r"^speed=\s*([\d.]+)x", text, re.M)
    return (int(frames[-1]) if frames else 0), (float(speeds[-1]) if speeds else float("nan"))


def check_byte(t):
    return ((t & 0xFF) + 3 * ((t >> 8) & 0xFF) + 7 * ((t >> 16) & 0xFF) + 90) % 256


def decode_strip(gray, width=256, height=8):
    """The player's algorithm on a width x height grey picture of the strip: mean of each
    cell's centre quarter, threshold 128, reject ambiguous cells or a failed check.
    Returns (time24_ms, min_margin) or None."""
    word, margin = 0, 255.0
    cw = width / CELLS
    for cell in range(CELLS):
        xs = range(int(cell * cw + cw / 4), int(cell * cw + 3 * cw / 4))
        ys = range(height // 4, 3 * height // 4)
        vals = [gray[y * width + x] for y in ys for x in xs]
        mean = sum(vals) / len(vals)
        margin = min(margin, abs(mean - 128))
        word = word * 2 + (1 if mean > 128 else 0)
    if margin < 48 or check_byte(word >> 8) != word & 0xFF:
        return None
    return word >> 8, margin


def read_stamps(path, scale=None):
    """Every frame of a recorded stream, optionally re-encoded like the lowest rung first,
    read back with the player's algorithm."""
    src = path
    if scale:
        src = path + f".{scale}p.ts"
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", path,
                        "-vf", f"scale=-2:{scale}", "-fps_mode", "passthrough", "-c:v", "libx264",
                        "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0", "-b:v", "600k",
                        "-maxrate", "600k", "-bufsize", "600k", "-f", "mpegts", src], check=True, timeout=120)
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", src,
                          "-vf", f"crop=iw:ih*{STRIP_H}/1080:0:0,scale=256:8:flags=area", "-fps_mode", "passthrough",
                          "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"],
                         check=True, capture_output=True, timeout=120).stdout
    return [decode_strip(raw[i:i + 2048]) for i in range(0, len(raw) - 2047, 2048)]


def verify_stamp(preset, seconds):
    """Record the publisher's own output with ffmpeg logging each frame's capture time (its pts
    before the stamp is drawn), then read every frame's stamp back and compare, as published
    and after a 360p 600 kbit/s re-encode."""
    work = tempfile.mkdtemp(prefix="pulse-stamp-")
    try:
        path = os.path.join(work, "stamped.ts")
        args = publisher_args(preset, path, fmt="mpegts", audio=False, log_frames=True)
        args[-3:-3] = ["-frames:v", str(seconds * 30)]
        started = time.time() * 1000
        log = subprocess.run(args, capture_output=True, timeout=seconds + 60).stderr
        captured = [int(m.group(1)) for m in re.finditer(rb"n:\s*\d+\s+pts:\s*(\d+)", log)]
        # After the first 2 s: the source's clock starts with the first frame, and the stall
        # while x264 initialises is caught up by handing the next frames over at once.
        steady = captured[60:]
        steps = sorted(b - a for a, b in zip(steady, steady[1:]))
        print(f"### Glass-to-glass stamp check — {common.now_utc()}\n")
        print(f"Command: `python3 bench/latency.py --verify-stamp --publisher-preset {preset}`  ")
        print(f"{len(captured)} frames captured; capture time − start of the run: first "
              f"{captured[0] - started:.0f} ms; after the first 2 s, step between frames min / median / p99 / max "
              f"{steps[0]} / {steps[len(steps) // 2]} / {steps[int(len(steps) * 0.99)]} / {steps[-1]} ms.\n"
              if captured and steps else "no frames logged\n")
        print("| stream read back | frames | stamp decoded | equal to the logged capture time (ms) | worst cell margin (of 128) |")
        print("|---|---|---|---|---|")
        failed = not captured
        for label, scale in (("as published: 1080p x264 4.5 Mbit/s", None),
                             ("re-encoded 360p x264 600 kbit/s (lowest rung)", 360)):
            reads = read_stamps(path, scale)
            ok = [r for r in reads if r]
            exact = sum(1 for c, r in zip(captured, reads) if r and r[0] == c % MODULUS)
            print(f"| {label} | {len(reads)} | {len(ok)} | {exact} | {min((r[1] for r in ok), default=0):.0f} |")
            failed |= not reads or exact != len(reads) or len(reads) != len(captured)
        print("\nThe stamp is ffmpeg's wall clock (`av_gettime()`, rounded to 1 ms) at the moment the "
              "`realtime`-paced source handed the frame over: the \"capture\" instant of a camera-less "
              "source. Encode, RTMP, server, HTTP, player buffering, decode and presentation all come after it.")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the servers ------------------------------------------------------------------------------

def media_uris(master):
    uris = [line for line in master.splitlines() if line and not line.startswith("#")]
    return uris + re.findall(r'URI="([^"]+)"', master)


def wait_live(master_url, base, marker, count=None, timeout=LIVE_TIMEOUT_S):
    """Until the master and every playlist it names list `marker` (a part or a segment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, master = common.get(master_url)
        if status == 200:
            uris = media_uris(master)
            if uris and (count is None or len(uris) >= count) and all(
                    re.search(marker, common.get(base + u)[1], re.M) for u in uris):
                return master
        time.sleep(0.05)
    return None


def pulse_settings(master, base):
    """PART-TARGET, PART-HOLD-BACK, HOLD-BACK and TARGETDURATION in force, from the first video
    media playlist (the one named by the first EXT-X-STREAM-INF)."""
    lines = master.splitlines()
    uri = next((lines[i + 1] for i, l in enumerate(lines[:-1]) if l.startswith("#EXT-X-STREAM-INF")), None)
    text = common.get(base + uri)[1] if uri else ""

    def find(pattern):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None
    return {"PART-TARGET": find(r"PART-TARGET=([\d.]+)"), "PART-HOLD-BACK": find(r"PART-HOLD-BACK=([\d.]+)"),
            "HOLD-BACK": find(r"[^-]HOLD-BACK=([\d.]+)"), "TARGETDURATION": find(r"#EXT-X-TARGETDURATION:(\d+)")}


def nginx_settings(master, base):
    uri = next((u for u in media_uris(master)), None)
    text = common.get(base + uri)[1] if uri else ""
    m = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
    return {"TARGETDURATION": float(m.group(1)) if m else None, "hls_fragment": "2s", "hls_playlist_length": "12s"}


def proc_stat_busy():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / common.TICK


class TreeCpu:
    """CPU-seconds of a process tree over a window; processes that exit in it keep their last reading."""

    def __init__(self, root):
        self.root = root
        self.first = common.tree_sample(root) if root else {}
        self.last = dict(self.first)

    def poll(self):
        if self.root:
            self.last.update(common.tree_sample(self.root))

    def seconds(self):
        return sum(c - self.first.get(k, (0.0,))[0] for k, (c, _, _) in self.last.items())


def run_player(url, seconds, player, level, roots, progress, wait_ready=0, first_frame_timeout=20):
    """One glass.mjs session; returns (report, cpu dict in cores over the session, the
    publisher's frame rate over the session)."""
    args = ["node", GLASS, url, "--seconds", str(seconds), "--hls-config", json.dumps(PLAYERS[player]),
            "--first-frame-timeout", str(first_frame_timeout)]
    if level:
        args += ["--level", str(level)]
    if wait_ready:
        args += ["--wait-ready", str(wait_ready)]
    fd, out_path = tempfile.mkstemp(prefix="glass-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        t0, busy0, frames0 = time.monotonic(), proc_stat_busy(), publisher_speed(progress)[0]
        trees = {name: TreeCpu(pid) for name, pid in roots.items()}
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out)
        trees["player"] = TreeCpu(proc.pid)
        limit = time.monotonic() + seconds + wait_ready + first_frame_timeout + 40
        while proc.poll() is None and time.monotonic() < limit:
            for tree in trees.values():
                tree.poll()
            time.sleep(0.5)
        if proc.poll() is None:
            common.stop_tree(proc, signal.SIGTERM)
        elapsed = time.monotonic() - t0
        # -progress is written once a second: good enough over a session of many seconds.
        fps = (publisher_speed(progress)[0] - frames0) / elapsed
        cpu = {name: tree.seconds() / elapsed for name, tree in trees.items()}
        cpu["machine"] = (proc_stat_busy() - busy0) / elapsed
    try:
        with open(out_path) as f:
            report = json.loads(f.read() or "{}")
    except ValueError:
        report = {}
    finally:
        os.unlink(out_path)
    if proc.returncode:
        report.setdefault("harnessErrors", []).append(f"glass.mjs exit {proc.returncode}")
    return report, cpu, fps


def session(side, server, repeat, combos, args, work):
    """A fresh stream + stamped publisher on one server, then one player session per combo."""
    name = f"glass-{repeat}-{time.time_ns()}"
    if side == "pulse":
        stream = server.create(name, "default")
        pub_url = f"{stream['rtmp_url']}/{stream['stream_key']}"
        url = stream["playback_url"]
        base = f"http://127.0.0.1:{server.http}/live/{stream['id']}/"
        marker, count = r"^#EXT-X-PART:", None
    else:
        pub_url = server.publish_url(name)
        url = f"http://127.0.0.1:{server.http}/hls/{name}.m3u8"
        base = f"http://127.0.0.1:{server.http}/hls/"
        marker, count = r"^[^#\s]", NGINX_VARIANTS
    progress = os.path.join(work, f"{name}.progress")
    started = time.monotonic()
    pub = publish_stamped(pub_url, args.publisher_preset, progress)
    results = []
    try:
        if args.quick:
            # The player joins once every media playlist lists parts: `make test` runs this
            # on the debug build, whose 1080p ladder can take longer to list its first parts
            # than hls.js's retry of an empty playlist waits (levelEmptyError, with backoff).
            wait_live(url, base, marker, count, timeout=20)
            report, cpu, fps = run_player(url, args.seconds, combos[0][0], combos[0][1],
                                          {"server": server.proc.pid, "publisher": pub.pid}, progress,
                                          first_frame_timeout=10)
            settings = {}
            master = wait_live(url, base, marker, count, timeout=2)
            if master:
                settings = pulse_settings(master, base)
            results.append({"side": side, "repeat": repeat, "player": combos[0][0], "level": combos[0][1],
                            "report": report, "cpu": cpu, "publisher_fps": fps})
        else:
            master = wait_live(url, base, marker, count)
            live_after = time.monotonic() - started
            if master is None:
                raise SystemExit(f"{side}: stream never went live within {LIVE_TIMEOUT_S}s")
            settings = pulse_settings(master, base) if side == "pulse" else nginx_settings(master, base)
            settings["live after (s)"] = round(live_after, 2)
            time.sleep(max(0.0, args.warmup - (time.monotonic() - started)))
            for player, level in combos:
                report, cpu, fps = run_player(url, args.seconds, player, level,
                                              {"server": server.proc.pid, "publisher": pub.pid}, progress)
                results.append({"side": side, "repeat": repeat, "player": player, "level": level,
                                "report": report, "cpu": cpu, "publisher_fps": fps})
    finally:
        elapsed = time.monotonic() - started
        pub.terminate()
        try:
            pub.wait(10)
        except subprocess.TimeoutExpired:
            pub.kill()
            pub.wait()
    frames, speed = publisher_speed(progress)
    for r in results:
        r["settings"] = settings
        r["publisher"] = {"frames": frames, "speed": speed, "seconds": round(elapsed, 1)}
    return results


# ---- reporting ---------------------------------------------------------------------------------

def run_median(r, key="latency"):
    s = (r["report"].get("summary") or {}).get(key) or {}
    return s.get("median", float("nan"))


def fmt_runs(xs, f=".2f"):
    return ", ".join(format(x, f) for x in xs)


def level_label(side, level):
    if level == 1080:
        return "1080p passthrough" if side == "pulse" else "1080p `_src` copy"
    return f"{level}p transcoded" if level else "ABR (auto)"


def print_report(results, args, command, load_before, browser, hls_version):
    med = statistics.median
    print(f"### Glass-to-glass latency in hls.js, Pulse Edge vs nginx-rtmp — {common.now_utc()}\n")
    print(f"Machine: {common.machine().rsplit(', load', 1)[0]}, load before start {load_before:.2f}  ")
    print(f"Command: `{command}`  ")
    print(f"Player: hls.js {hls_version} in {browser} headless, loopback, 640x360 page; "
          f"configs: " + "; ".join(f"`{p}` = {json.dumps(dict(lowLatencyMode=True, **PLAYERS[p]))}"
                                    for p in dict.fromkeys(r["player"] for r in results)) + "  ")
    print(f"Publisher: ffmpeg testsrc2 1080p30, wall-clock stamp burned in (checked by `--verify-stamp`), libx264 "
          f"{args.publisher_preset}/zerolatency, 2 s GOP, no B-frames, 4.5 Mbit/s, AAC 128k, RTMP; the same for both "
          "servers.  ")
    for side, label in (("pulse", "Pulse Edge `default` profile"), ("nginx", "nginx-rtmp baseline")):
        s = next((r["settings"] for r in results if r["side"] == side and r.get("settings")), None)
        if s:
            print(f"{label} playlist settings in force: " + ", ".join(f"{k} {v}" for k, v in s.items()) + "  ")
    if any(r["side"] == "nginx" for r in results):
        print(f"Baseline: {common.versions()}  ")
    print(f"Sampling: one stamp per ~1 s for {args.seconds} s from the first presented frame; "
          f"player joins {args.warmup} s after the publisher starts.\n")

    print("| figure | median | runs |\n|---|---|---|")
    combos = list(dict.fromkeys((r["player"], r["level"]) for r in results))
    failed = False
    for player, level in combos:
        per = {side: [r for r in results if r["side"] == side and (r["player"], r["level"]) == (player, level)]
               for side in ("pulse", "nginx")}
        for side, name in (("pulse", "Pulse Edge"), ("nginx", "nginx-rtmp")):
            runs = [run_median(r) for r in per[side]]
            if not runs:
                continue
            failed |= any(x != x for x in runs)
            print(f"| glass-to-glass, {name}, {level_label(side, level)}, hls.js `{player}` (s) "
                  f"| {med(runs):.2f} | {fmt_runs(runs)} |")
        if per["pulse"] and per["nginx"]:
            ratios = [run_median(a) / run_median(b) for a, b in zip(per["pulse"], per["nginx"])]
            print(f"| **ratio Pulse / nginx, {level_label('pulse', level).split()[0]}, `{player}`** | **{med(ratios):.2f}** | {fmt_runs(ratios)} |")
        for side, name in (("pulse", "Pulse Edge"), ("nginx", "nginx-rtmp")):
            runs = [run_median(r, "hlsLatency") for r in per[side]]
            if runs:
                print(f"| hls.js `latency` (second opinion), {name}, {level_label(side, level)}, `{player}` (s) "
                      f"| {med(runs):.2f} | {fmt_runs(runs)} |")

    print("\nNotes: hls.js 1.7.4 raises `playbackRate` (up to `maxLiveSyncPlaybackRate`) only while its forward "
          "buffer is > 1 s (latency-controller), so `catchup` settles near 1 s of buffer + the edge delay, above a "
          "0.702 s PART-HOLD-BACK. Playback can only begin at a keyframe (INDEPENDENT part), so with `defaults` the "
          "join position, and the latency it then keeps, varies with the phase of the publisher's 2 s GOP.")
    print("\nPer session (medians over the session; CPU in cores over the player session):\n")
    print("| side | level | player | glass p50 / p90 (s) | hls.js latency / target (s) | presented heights "
          "| stamps ok / tried | stalls (s) | dropped / frames | playbackRate p50 | CPU publisher / server / "
          "player / machine | publisher frame rate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["report"].get("summary") or {}
        lat = s.get("latency") or {}
        cpu = r["cpu"]
        errs = r["report"].get("harnessErrors") or []
        heights = ",".join(f"{h}×{n}" for h, n in (s.get("presentedHeights") or {}).items())
        print(f"| {r['side']} #{r['repeat']} | {r['level'] or 'auto'} | {r['player']} "
              f"| {lat.get('median', float('nan')):.3f} / {lat.get('p90', float('nan')):.3f} "
              f"| {((s.get('hlsLatency') or {}).get('median') or float('nan')):.3f} / "
              f"{((s.get('targetLatency') or {}).get('median') or float('nan')):.3f} "
              f"| {heights or '-'} | {s.get('stamps', 0)} / {s.get('stampAttempts', 0)} "
              f"| {s.get('stallCount', '?')} ({s.get('stalledSeconds', '?')}) "
              f"| {s.get('droppedVideoFrames', '?')} / {s.get('totalVideoFrames', '?')} "
              f"| {((s.get('playbackRate') or {}).get('median') or float('nan')):.2f} "
              f"| {cpu.get('publisher', 0):.2f} / {cpu.get('server', 0):.2f} / {cpu.get('player', 0):.2f} / "
              f"{cpu.get('machine', 0):.2f} | {r['publisher_fps']:.1f} fps |"
              + (f" errors: {'; '.join(errs)[:200]}" if errs else ""))
        failed |= not s.get("stamps")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=60, help="sampling window per player session")
    ap.add_argument("--warmup", type=float, default=12, help="s from publish start to player start")
    ap.add_argument("--players", default="defaults,catchup")
    ap.add_argument("--levels", default="1080,720", help="heights to lock; 0 = hls.js ABR")
    ap.add_argument("--sides", default="pulse,nginx")
    ap.add_argument("--publisher-preset", default="ultrafast",
                    help="x264 preset of the publisher (see the docstring for why not veryfast)")
    ap.add_argument("--quick", action="store_true", help="one ~3 s Pulse-only session")
    ap.add_argument("--verify-stamp", action="store_true")
    ap.add_argument("--json", help="write every player report here")
    args = ap.parse_args()
    common.cleanup_on_exit()
    command = "python3 bench/latency.py " + " ".join(sys.argv[1:])
    if args.verify_stamp:
        common.require("ffmpeg")
        return verify_stamp(args.publisher_preset, 10)
    if args.quick:
        args.repeats, args.seconds, args.warmup, args.sides = 1, 3, 0, "pulse"
        args.players, args.levels = "defaults", "1080"
    sides = [s for s in args.sides.split(",") if s]
    players = [p for p in args.players.split(",") if p]
    levels = [int(x) or None for x in args.levels.split(",") if x]
    if not set(sides) <= {"pulse", "nginx"} or not set(players) <= set(PLAYERS) or not players or not levels:
        raise SystemExit("bad --sides/--players/--levels")
    common.require("ffmpeg", "node", *(["nginx"] if "nginx" in sides else []))
    if not os.path.isdir(NODE_MODULES):
        raise SystemExit("npm ci --prefix tests/player first")
    if "nginx" in sides and not os.path.exists(common.RTMP_MODULE):
        raise SystemExit(f"{common.RTMP_MODULE} missing (apt-get install libnginx-mod-rtmp)")
    combos = [(p, lv) for lv in levels for p in players]
    load_before = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="pulse-latency-")
    servers = {}
    results = []
    try:
        if "pulse" in sides:
            servers["pulse"] = common.PulseServer(work)
        if "nginx" in sides:
            servers["nginx"] = common.Nginx(work)
        for r in range(args.repeats):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                common.settle(servers[side].proc.pid, limit_s=0 if args.quick else 10)
                results += session(side, servers[side], r + 1, combos if r % 2 == 0 else combos[::-1],
                                   args, work)
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    results.sort(key=lambda r: (r["repeat"], r["side"] != "pulse"))
    first = next((r["report"] for r in results if r["report"].get("browser")), {})
    browser = "Chromium " + ((first.get("browser") or {}).get("version") or "?")
    failed = print_report(results, args, command, load_before, browser, first.get("hlsVersion") or "?")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
