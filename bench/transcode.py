#!/usr/bin/env python3
"""Pulse Edge against the classic nginx-rtmp + `exec ffmpeg` design, in one session.

For both servers, on the same 60 s 1080p30 source as bench/spine.py:
  * time from publish start to first playable media: Pulse Edge, the first EXT-X-PART in
    every rendition playlist; nginx-rtmp, the first segment listed in every variant playlist;
  * server CPU cores and RSS, summed over the server's whole process tree (for nginx: master,
    worker and the ffmpeg it execs), one source looped with `-re -c copy`, measured over a
    window after an 8 s warm-up.
Runs alternate between the servers so that machine noise hits both alike.

Usage: python3 bench/baseline.py [--repeats N] [--seconds S]
Needs: target/release/pulse-edge, ffmpeg, nginx with libnginx-mod-rtmp
(`apt-get install -y --no-install-recommends nginx-light libnginx-mod-rtmp`).
Config: nginx/rtmp-baseline/nginx.conf.template.  Prints a Markdown block.
"""

import argparse
import grp
import http.server
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spine  # noqa: E402  (source file, Pulse Edge server and publisher helpers)

TEMPLATE = os.path.join(spine.ROOT, "nginx", "rtmp-baseline", "nginx.conf.template")
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
VARIANTS = ("_src", "_720p", "_480p", "_360p")  # must match hls_variant in the template
WARM_UP_S = 8
FIRST_MEDIA_TIMEOUT_S = 30
PUBLISH_KEY = "baseline-" + secrets.token_hex(8)


# ---- process tree accounting -------------------------------------------------------------

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(root):
    """(pid, starttime) of root and all its descendants; starttime guards against pid reuse."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), int(fields[19])))
    try:
        tree = [(root, int(_stat_fields(root)[19]))]
    except OSError:
        return []
    i = 0
    while i < len(tree):
        tree.extend(children.get(tree[i][0], []))
        i += 1
    return tree


def _same_process(pid, start):
    try:
        return int(_stat_fields(pid)[19]) == start
    except OSError:
        return False


def tree_sample(root):
    """{(pid, start): (cpu_seconds, rss_mib, comm)} for the live tree."""
    sample = {}
    for pid, start in process_tree(root):
        try:
            fields = _stat_fields(pid)
            cpu = (int(fields[11]) + int(fields[12])) / spine.TICK
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline") as f:
                title = f.read().split("\0")[0]
            if title.startswith("nginx: "):  # "nginx: master process /usr/sbin/nginx -p …" -> "nginx master"
                comm = "nginx " + title[len("nginx: "):].split(" process")[0]
            sample[(pid, start)] = (cpu, spine.rss_mib(pid), comm)
        except OSError:
            continue  # exited between the listing and the read
    return sample


def settle(root, limit_s=15):
    """Wait until the tree is idle (< 0.05 cores over 1 s), so a previous run's transcoder
    shutting down is not counted in the next one."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = tree_sample(root)
        time.sleep(1)
        after = tree_sample(root)
        busy = sum(cpu - before.get(key, (0,))[0] for key, (cpu, _, _) in after.items())
        if busy < 0.05:
            return


def stop_tree(proc, sig):
    """Signal the root, then make sure no descendant we started outlives it."""
    tree = process_tree(proc.pid)
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    for pid, start in tree[1:]:
        while _same_process(pid, start) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _same_process(pid, start):
            os.kill(pid, signal.SIGKILL)


# ---- the nginx-rtmp side ------------------------------------------------------------------

class AuthHandler(http.server.BaseHTTPRequestHandler):
    """nginx-rtmp's on_publish callback: a form POST carrying the publish URL's args."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode(errors="replace"))
        ok = form.get("key", [""])[0] == PUBLISH_KEY
        self.server.answers.append(200 if ok else 403)
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Nginx:
    def __init__(self, workdir):
        self.prefix = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        os.chmod(self.prefix, 0o755)
        for sub in ("hls", "tmp"):
            os.makedirs(os.path.join(self.prefix, sub))
        self.auth = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AuthHandler)
        self.auth.answers = []
        threading.Thread(target=self.auth.serve_forever, daemon=True).start()
        self.http = spine.free_port()
        self.rtmp = spine.free_port()
        values = {
            "PREFIX": self.prefix, "RTMP_PORT": self.rtmp, "HTTP_PORT": self.http,
            "AUTH_PORT": self.auth.server_address[1],
            "USER": pwd.getpwuid(os.geteuid()).pw_name, "GROUP": grp.getgrgid(os.getegid()).gr_name,
        }
        conf = open(TEMPLATE).read()
        for key, value in values.items():
            conf = conf.replace("{{" + key + "}}", str(value))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log_path = os.path.join(self.prefix, "error.log")
        self.proc = subprocess.Popen(
            [shutil.which("nginx") or "/usr/sbin/nginx", "-p", self.prefix, "-c", self.conf, "-e", self.log_path],
            stdin=subprocess.DEVNULL, stdout=open(os.path.join(self.prefix, "stdout.log"), "w"),
            stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.http), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.rtmp), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("nginx did not start:\n" + open(self.log_path).read())

    def publish_url(self, name, key=PUBLISH_KEY):
        return f"rtmp://127.0.0.1:{self.rtmp}/live/{name}?key={key}"

    def stop(self):
        stop_tree(self.proc, signal.SIGTERM)
        self.auth.shutdown()
        self.auth.server_close()


def nginx_rejects_bad_key(nginx):
    """The auth callback is really in the path: a wrong key must not get a stream through."""
    pub = spine.publish(nginx.publish_url(f"badkey-{time.time_ns()}", key="wrong"))
    try:
        return pub.wait(10) != 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        if pub.poll() is None:
            pub.kill()
            pub.wait()


def nginx_time_to_first_segment(nginx):
    name = f"ttfm-{time.time_ns()}"
    base = f"http://127.0.0.1:{nginx.http}/hls/"
    started = time.monotonic()
    pub = spine.publish(nginx.publish_url(name))
    try:
        while time.monotonic() - started < FIRST_MEDIA_TIMEOUT_S:
            status, master = spine.get(f"{base}{name}.m3u8")
            if status == 200:
                uris = [l for l in master.splitlines() if l and not l.startswith("#")]
                if len(uris) == len(VARIANTS) and all(
                        any(l and not l.startswith("#") for l in spine.get(base + u)[1].splitlines())
                        for u in uris):
                    return time.monotonic() - started
            time.sleep(0.01)
        return float("nan")
    finally:
        pub.terminate()
        pub.wait()


# ---- both servers -------------------------------------------------------------------------

def measure_tree(root, url, seconds):
    """Cores and peak RSS of the root's process tree while one source is looped into url."""
    settle(root)
    pub = spine.publish(url, loop=True)
    try:
        time.sleep(WARM_UP_S)
        t0 = time.monotonic()
        first = tree_sample(root)
        last = dict(first)
        peak, comms = 0.0, set()
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            now = tree_sample(root)
            last.update(now)
            peak = max(peak, sum(rss for _, rss, _ in now.values()))
            comms |= {f"{comm}:{pid}" for (pid, _), (_, _, comm) in now.items()}
        elapsed = time.monotonic() - t0
        # A process that started inside the window counts from zero.
        cpu = sum(c - first.get(key, (0.0,))[0] for key, (c, _, _) in last.items())
        return cpu / elapsed, peak, comms
    finally:
        pub.terminate()
        pub.wait()


def pulse_publish_url(server):
    stream = server.create(f"cpu-{time.time_ns()}", "default")
    return f"{stream['rtmp_url']}/{stream['stream_key']}"


def describe_tree(comms):
    names = sorted(c.split(":")[0] for c in comms)
    return " + ".join(f"{n} ×{names.count(n)}" if names.count(n) > 1 else n for n in sorted(set(names)))


def versions():
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    rtmp = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-rtmp"],
                          capture_output=True, text=True).stdout.strip()
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]
    return f"nginx {nginx} + libnginx-mod-rtmp {rtmp or '?'}, ffmpeg {ffmpeg}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    for tool in ("ffmpeg", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install -y --no-install-recommends "
                             "nginx-light libnginx-mod-rtmp ffmpeg)")
    if not os.path.exists(RTMP_MODULE):
        raise SystemExit(f"{RTMP_MODULE} missing (apt-get install -y --no-install-recommends libnginx-mod-rtmp)")
    if not os.path.exists(spine.BIN):
        raise SystemExit("build first: make release")
    # A SIGTERM to the bench must still run the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spine.make_source()
    load_before = os.getloadavg()
    work = tempfile.mkdtemp(prefix="pulse-baseline-")
    pulse = nginx = None
    try:
        pulse = spine.Server(work)
        nginx = Nginx(work)
        auth_rejects = nginx_rejects_bad_key(nginx)
        first = {"pulse": [], "nginx": []}
        cpu = {"pulse": [], "nginx": []}
        rss = {"pulse": [], "nginx": []}
        trees = {"pulse": set(), "nginx": set()}
        for r in range(args.repeats):
            for side in (("pulse", "nginx") if r % 2 == 0 else ("nginx", "pulse")):
                if side == "pulse":
                    settle(pulse.proc.pid)
                    first["pulse"].append(spine.time_to_first_part(pulse, "default"))
                else:
                    settle(nginx.proc.pid)
                    first["nginx"].append(nginx_time_to_first_segment(nginx))
        for r in range(args.repeats):
            for side in (("pulse", "nginx") if r % 2 == 0 else ("nginx", "pulse")):
                if side == "pulse":
                    cores, peak, comms = measure_tree(pulse.proc.pid, pulse_publish_url(pulse), args.seconds)
                else:
                    url = nginx.publish_url(f"cpu-{time.time_ns()}")
                    cores, peak, comms = measure_tree(nginx.proc.pid, url, args.seconds)
                cpu[side].append(cores)
                rss[side].append(peak)
                trees[side] = comms  # distinct pids seen in the last window
        auth_answers = list(nginx.auth.answers)
    finally:
        if nginx:
            nginx.stop()
        if pulse:
            stop_tree(pulse.proc, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median

    def row(label, runs, fmt):
        print(f"| {label} | {format(med(runs), fmt)} | {', '.join(format(r, fmt) for r in runs)} |")

    def ratio_row(label, a, b):
        ratios = [x / y for x, y in zip(a, b)]
        print(f"| **{label}** | **{med(ratios):.2f}** | {', '.join(f'{r:.2f}' for r in ratios)} |")

    print(f"### Pulse Edge vs nginx-rtmp + exec ffmpeg — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"Machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{platform.platform()}, load before start {load_before[0]:.2f}  \n"
          f"Baseline: {versions()}, config `nginx/rtmp-baseline/nginx.conf.template`  \n"
          f"Command: `python3 bench/baseline.py --repeats {args.repeats} --seconds {args.seconds}`\n")
    print("| figure | median | runs |\n|---|---|---|")
    row("time to first playable media, Pulse Edge `default`: first part in every rendition (s)", first["pulse"], ".2f")
    row("time to first playable media, nginx-rtmp ladder: first segment in every variant (s)", first["nginx"], ".2f")
    ratio_row("ratio Pulse / nginx, time to first media", first["pulse"], first["nginx"])
    row(f"server CPU, 1080p30, {args.seconds} s window, Pulse Edge tree (cores)", cpu["pulse"], ".3f")
    row(f"server CPU, 1080p30, {args.seconds} s window, nginx + ffmpeg tree (cores)", cpu["nginx"], ".3f")
    ratio_row("ratio Pulse / nginx, CPU", cpu["pulse"], cpu["nginx"])
    row("server RSS peak, Pulse Edge tree (MiB)", rss["pulse"], ".0f")
    row("server RSS peak, nginx + ffmpeg tree (MiB)", rss["nginx"], ".0f")
    ratio_row("ratio Pulse / nginx, RSS", rss["pulse"], rss["nginx"])
    print(f"\nProcess trees measured: Pulse Edge = {describe_tree(trees['pulse'])}; "
          f"nginx = {describe_tree(trees['nginx'])}.  ")
    print(f"nginx `on_publish` answers: {len(auth_answers)} "
          f"({auth_answers.count(200)} × 200, {auth_answers.count(403)} × 403); "
          f"publish with a wrong key refused: {'yes' if auth_rejects else 'NO'}.")


if __name__ == "__main__":
    sys.exit(main())
