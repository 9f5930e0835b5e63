#!/usr/bin/env python3
"""Issue 14's proof: a legitimate 720p publish keeps playing while anonymous clients attack,
Pulse Edge side by side with nginx-rtmp under the same attacks.

Four kinds of attack, `--workers` (default 4) attacking connections of each kind, every worker
reconnecting as soon as the server drops it:
  * chunk streams:    after a plain RTMP handshake, 14-byte type-0 headers of empty messages,
                      each on a new chunk-stream id (defect 1: quadratic partial-message count);
  * partial messages: after the handshake, eight messages of 8 MiB announced on eight chunk
                      streams, each sent but for its last byte, then one byte per second
                      (defect 3: 64 MiB per unauthenticated connection);
  * idle HTTP:        connections to the HTTP port that send nothing (defect 2);
  * header trickle:   an HTTP request head sent one byte per 500 ms (slowloris).
Each kind runs alone for `--seconds`, then all four together. Throughout:
  * liveness: Pulse Edge's `/livez` (nginx has none: its HLS playlist, a static file, stands in),
    probed every 100 ms over a fresh connection; a probe that fails counts as 5 s;
  * memory: RSS of the server's process tree, against the sample taken before the first attack;
  * the legitimate viewer: the media playlist polled every 500 ms (the longest time its newest
    segment did not change is "playlist stale"), and, unless --no-player or --quick, hls.js in
    headless Chromium (tests/player/play.mjs) over the whole attack, whose rebuffers are counted.
Targets (issue 14): no stall, /livez p99 ≤ 50 ms, RSS growth ≤ 100 MiB.

Both sides package without transcoding (Pulse Edge `passthrough` profile; nginx-rtmp `hls on`,
nginx/rtmp-baseline/passthrough.conf.template with a CORS header added for the player), so the
attacks are what is measured, not the encoder. Pulse Edge runs with its default limits.

Usage: python3 bench/hostile.py [--seconds 30] [--workers 4] [--no-baseline] [--no-player] [--quick]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Nginx, PulseServer, stop_tree, tree_sample  # noqa: E402

SOURCE_720P = os.path.join(common.CACHE, "src-720p30-60s.flv")
PASSTHROUGH_TEMPLATE = os.path.join(common.ROOT, "nginx", "rtmp-baseline", "passthrough.conf.template")
PLAYER = os.path.join(common.ROOT, "tests", "player", "play.mjs")
KINDS = ("chunk streams", "partial messages", "idle HTTP", "header trickle")
PROBE_FAIL_MS = 5000.0
LIVE_TIMEOUT_S = 30


# ---- the attacks ----------------------------------------------------------------------------

def rtmp_handshake(sock):
    sock.sendall(b"\x03" + bytes(1536))
    s = b""
    while len(s) < 3073:
        got = sock.recv(3073 - len(s))
        if not got:
            raise ConnectionError("closed during handshake")
        s += got
    sock.sendall(s[1:1537])


def type0_header(csid, type_id, length, timestamp=0):
    """fmt 0 with the 3-byte basic header form (ids 64..65599)."""
    v = csid - 64
    return bytes([1, v & 0xFF, v >> 8]) + timestamp.to_bytes(3, "big") + length.to_bytes(3, "big") + \
        bytes([type_id]) + struct.pack("<I", 1)


class Attack(threading.Thread):
    """One attacking worker of `kind`; reconnects whenever the server drops it."""

    def __init__(self, kind, rtmp_port, http_port, stop):
        super().__init__(daemon=True)
        self.kind, self.rtmp, self.http, self.stop_event = kind, rtmp_port, http_port, stop
        self.connections = 0
        self.dropped = 0  # connections the server closed or refused

    def run(self):
        step = {"chunk streams": self.chunk_streams, "partial messages": self.partial_messages,
                "idle HTTP": self.idle_http, "header trickle": self.header_trickle}[self.kind]
        while not self.stop_event.is_set():
            try:
                port = self.http if self.kind in ("idle HTTP", "header trickle") else self.rtmp
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    self.connections += 1
                    step(sock)
            except OSError:
                self.dropped += 1
                self.stop_event.wait(0.05)

    def chunk_streams(self, sock):
        rtmp_handshake(sock)
        csid = 64
        while not self.stop_event.is_set():
            batch = bytearray()
            for _ in range(512):
                batch += type0_header(csid, 4, 0)
                csid = 64 if csid >= 65599 else csid + 1
            sock.sendall(batch)

    def partial_messages(self, sock):
        rtmp_handshake(sock)
        # Set Chunk Size 65536: fmt 0 on csid 2, timestamp 0, length 4, type 1, stream 0.
        sock.sendall(bytes([2]) + bytes(3) + (4).to_bytes(3, "big") + b"\x01" + bytes(4) + struct.pack(">I", 65536))
        length = 8 * 1024 * 1024
        piece = bytes(65536)
        for csid in range(64, 72):
            sock.sendall(type0_header(csid, 9, length))
            sent = 0
            while sent < length - 1 and not self.stop_event.is_set():
                n = min(len(piece), length - 1 - sent)
                if sent:
                    sock.sendall(bytes([0xC1, (csid - 64) & 0xFF, (csid - 64) >> 8]))  # type-3 continuation
                sock.sendall(piece[:n])
                sent += n
        while not self.stop_event.wait(1.0):
            sock.sendall(b"\x00")  # one byte a second keeps an idle timer from firing

    def idle_http(self, sock):
        sock.settimeout(1.0)
        while not self.stop_event.is_set():
            try:
                if not sock.recv(1024):
                    raise ConnectionError("closed")
            except socket.timeout:
                continue

    def header_trickle(self, sock):
        head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Trickle: " + b"a" * 100000
        for byte in head:
            if self.stop_event.wait(0.5):
                return
            sock.sendall(bytes([byte]))


def start_attacks(kinds, workers, rtmp_port, http_port):
    stop = threading.Event()
    attackers = [Attack(kind, rtmp_port, http_port, stop) for kind in kinds for _ in range(workers)]
    for a in attackers:
        a.start()
    return stop, attackers


# ---- what the legitimate side sees ----------------------------------------------------------------

def probe_ms(port, path):
    """One GET over a fresh connection, in ms; PROBE_FAIL_MS when it fails or is not a 200."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_FAIL_MS / 1000) as sock:
            sock.settimeout(PROBE_FAIL_MS / 1000)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while True:
                got = sock.recv(65536)
                if not got:
                    break
                reply += got
        ok = reply.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    return (time.monotonic() - t0) * 1000 if ok else PROBE_FAIL_MS


def last_segment(text):
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return lines[-1] if lines else None


class Viewer(threading.Thread):
    """Polls the media playlist every 500 ms; the longest run without a new segment."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop_event = url, threading.Event()
        self.lock = threading.Lock()
        self.window_start = time.monotonic()
        self.max_stale = 0.0
        self.last_change = time.monotonic()
        self.last = None

    def run(self):
        while not self.stop_event.wait(0.5):
            status, text = common.get(self.url)
            seg = last_segment(text) if status == 200 else None
            now = time.monotonic()
            with self.lock:
                if seg and seg != self.last:
                    self.last, self.last_change = seg, now
                self.max_stale = max(self.max_stale, now - max(self.last_change, self.window_start))

    def new_window(self):
        """Starts a new measurement; returns the longest staleness of the previous one."""
        with self.lock:
            stale, self.max_stale = self.max_stale, 0.0
            self.window_start = time.monotonic()
        return stale


def tree_rss(root):
    return sum(rss for _, rss, _ in tree_sample(root).values())


def measure(side, kinds, seconds, workers, viewer):
    """Runs `kinds` of attack for `seconds` against `side`; the figures of that window."""
    stop, attackers = start_attacks(kinds, workers, side["rtmp"], side["http"])
    viewer.new_window()
    probes, peak_rss = [], 0.0
    t0 = time.monotonic()
    next_rss = t0
    while time.monotonic() - t0 < seconds:
        probes.append(probe_ms(side["http"], side["probe"]))
        if time.monotonic() >= next_rss:
            peak_rss, next_rss = max(peak_rss, tree_rss(side["pid"])), next_rss + 1.0
        time.sleep(0.1)
    peak_rss = max(peak_rss, tree_rss(side["pid"]))
    stop.set()
    for a in attackers:
        a.join(10)
    probes.sort()
    p99 = probes[min(len(probes) - 1, int(len(probes) * 0.99))]
    return {
        "attack": " + ".join(kinds) if len(kinds) < len(KINDS) else "all four",
        "probes": len(probes), "p50": statistics.median(probes), "p99": p99, "max": probes[-1],
        "failed": sum(1 for p in probes if p >= PROBE_FAIL_MS),
        "rss_growth": peak_rss - side["rss0"], "stale": viewer.new_window(),
        "connections": sum(a.connections for a in attackers), "dropped": sum(a.dropped for a in attackers),
        "alive": side["proc"].poll() is None,
    }


# ---- the two sides ---------------------------------------------------------------------------------

def make_source_720p():
    if os.path.exists(SOURCE_720P):
        return
    os.makedirs(common.CACHE, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "60",
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "60", "-bf", "0",
         "-b:v", "2500k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", SOURCE_720P + ".tmp.flv"],
        check=True)
    os.rename(SOURCE_720P + ".tmp.flv", SOURCE_720P)


def publisher(url, quick):
    if quick:
        # No cached file to make: a small live encode is enough to prove the script works.
        args = ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0",
                "-pix_fmt", "yuv420p", "-f", "flv", url]
    else:
        args = ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", SOURCE_720P, "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


def wait_live(url):
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        status, text = common.get(url)
        if status == 200 and last_segment(text):
            return True
        time.sleep(0.2)
    return False


# The attackers and the legitimate publisher share 127.0.0.1: measure under the shipped
# per-address caps (docs/security.md), not the raised ones common.py uses for load benches.
DEFAULT_LIMITS = {
    "PULSE_HTTP_MAX_CONNECTIONS_PER_IP": "256",
    "PULSE_HTTP_MAX_BLOCKING_PER_IP": "100",
    "PULSE_RTMP_MAX_CONNECTIONS_PER_IP": "32",
    "PULSE_VIEWERS_MAX_SESSIONS_PER_TOKEN": "20",
}


def pulse_side(work, quick):
    server = PulseServer(work, env=DEFAULT_LIMITS)
    stream = server.create(f"hostile-{time.time_ns()}", "passthrough")
    pub = publisher(f"{stream['rtmp_url']}/{stream['stream_key']}", quick)
    master_url = stream["playback_url"]
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    media_url = None
    while time.monotonic() < deadline and not media_url:
        status, master = common.get(master_url)
        uris = [u for u in master.splitlines() if u and not u.startswith("#")] if status == 200 else []
        if uris:
            media_url = f"http://127.0.0.1:{server.http}/live/{stream['id']}/{uris[0]}"
        time.sleep(0.2)
    if not media_url or not wait_live(media_url):
        stop_tree(pub, 15)
        server.stop()
        raise SystemExit("Pulse Edge: the stream did not go live:\n" + open(server.log_path).read()[-3000:])
    return {"name": "Pulse Edge", "server": server, "pub": pub, "proc": server.proc, "pid": server.pid,
            "rtmp": server.rtmp, "http": server.http, "probe": "/livez", "player_url": master_url,
            "media_url": media_url}


def nginx_side(work, quick):
    # The packaging-only baseline, with the CORS header hls.js needs from another origin.
    template = os.path.join(work, "passthrough-cors.conf.template")
    conf = open(PASSTHROUGH_TEMPLATE).read().replace(
        "add_header Cache-Control no-cache;",
        "add_header Cache-Control no-cache;\n            add_header Access-Control-Allow-Origin *;")
    with open(template, "w") as f:
        f.write(conf)
    nginx = Nginx(work, template=template)
    name = f"hostile{time.time_ns()}"
    pub = publisher(nginx.publish_url(name), quick)
    media_url = f"http://127.0.0.1:{nginx.http}/hls/{name}/index.m3u8"
    if not wait_live(media_url):
        stop_tree(pub, 15)
        nginx.stop()
        raise SystemExit("nginx-rtmp: the stream did not go live:\n" + open(nginx.log_path).read()[-3000:])
    return {"name": "nginx-rtmp", "server": nginx, "pub": pub, "proc": nginx.proc, "pid": nginx.proc.pid,
            "rtmp": nginx.rtmp, "http": nginx.http, "probe": f"/hls/{name}/index.m3u8",
            "player_url": media_url, "media_url": media_url}


def start_player(url, seconds, work):
    out = open(os.path.join(work, f"player-{time.time_ns()}.json"), "w")
    proc = subprocess.Popen(["node", PLAYER, url, "--seconds", str(int(seconds)), "--low-latency", "false"],
                            stdin=subprocess.DEVNULL, stdout=out)
    return proc, out.name


def player_result(proc, path, seconds):
    try:
        proc.wait(seconds + 60)
    except subprocess.TimeoutExpired:
        stop_tree(proc, 15)
    try:
        summary = json.load(open(path)).get("summary") or {}
    except (OSError, ValueError):
        return None
    return summary


def run_side(make, work, args):
    side = make(work, args.quick)
    try:
        common.settle(side["pid"], limit_s=3 if args.quick else 15)
        side["rss0"] = tree_rss(side["pid"])
        viewer = Viewer(side["media_url"])
        viewer.start()
        phases = [[k] for k in KINDS] + [list(KINDS)]
        player = None
        if args.player:
            player = start_player(side["player_url"], args.seconds * len(phases) + 2, work)
        rows = [measure(side, kinds, args.seconds, args.workers, viewer) for kinds in phases]
        viewer.stop_event.set()
        summary = player_result(*player, args.seconds * len(phases)) if player else None
        return {"rows": rows, "player": summary, "publisher_alive": side["pub"].poll() is None}
    finally:
        stop_tree(side["pub"], 15)
        side["server"].stop()


# ---- report ------------------------------------------------------------------------------------------

def verdict(row):
    ok = row["alive"] and row["p99"] <= 50 and row["rss_growth"] <= 100 and row["stale"] <= 6
    return "yes" if ok else "**no**"


def print_report(results, args, machine):
    command = "--quick" if args.quick else f"--seconds {args.seconds:g} --workers {args.workers}" + \
        (" --no-baseline" if args.no_baseline else "") + ("" if args.player else " --no-player")
    print(f"### Hostile clients: a 720p publish under attack — {common.now_utc()}\n")
    print(f"Machine: {machine}  \nCommand: `python3 bench/hostile.py {command}`  \n"
          f"{'' if args.quick else common.versions() + '  '}\n"
          f"{args.workers} attacking connections of each kind, {args.seconds:g} s per phase, each worker reconnecting "
          "when dropped; liveness = `/livez` (nginx: its HLS playlist) over a fresh connection every 100 ms, a failed "
          "probe counted as 5 s; RSS growth = peak of the server's process tree against before the attacks; playlist "
          "stale = longest time the newest segment did not change (2 s segments). Targets: p99 ≤ 50 ms, growth ≤ "
          "100 MiB, no stall.\n")
    print("| server | attack | probes | p50 (ms) | p99 (ms) | max (ms) | failed | RSS growth (MiB) | playlist stale (s) "
          "| attacker conns / dropped | alive | meets targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        for r in result["rows"]:
            print(f"| {name} | {r['attack']} | {r['probes']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | "
                  f"{r['failed']} | {r['rss_growth']:+.0f} | {r['stale']:.1f} | {r['connections']} / {r['dropped']} | "
                  f"{'yes' if r['alive'] else '**no**'} | {verdict(r)} |")
    if any(result["player"] is not None for result in results.values()):
        print("\n| server | hls.js played | stalls | stalled (s) | fatal errors | decoded frames |")
        print("|---|---|---|---|---|---|")
        for name, result in results.items():
            p = result["player"]
            if p is None:
                print(f"| {name} | no report | | | | |")
                continue
            print(f"| {name} | {'yes' if p.get('played') else '**no**'} | {p.get('stallCount')} | "
                  f"{p.get('stalledSeconds')} | {p.get('fatalErrors')} | {p.get('decodedFrames')} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30, help="per attack phase (5 phases per server)")
    ap.add_argument("--workers", type=int, default=4, help="attacking connections of each kind")
    ap.add_argument("--no-baseline", action="store_true", help="skip the nginx-rtmp run")
    ap.add_argument("--no-player", action="store_true", help="no hls.js; the playlist poll only")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.no_baseline, args.no_player = 2.5, True, True
    args.player = not args.no_player
    common.require("ffmpeg", *([] if args.no_baseline else ["nginx"]), *(["node"] if args.player else []))
    common.cleanup_on_exit()
    if not args.quick:
        make_source_720p()
    machine = common.machine()
    work = tempfile.mkdtemp(prefix="pulse-hostile-")
    results = {}
    try:
        results["Pulse Edge"] = run_side(pulse_side, work, args)
        if not args.no_baseline:
            results["nginx-rtmp"] = run_side(nginx_side, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_report(results, args, machine)
    if args.quick:
        # The smoke check: the script ran and our server survived every phase.
        rows = results["Pulse Edge"]["rows"]
        if not all(r["alive"] for r in rows) or not results["Pulse Edge"]["publisher_alive"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
