"""What every bench script shares: paths, the cached sources, process accounting, a Pulse Edge
server and the nginx-rtmp baseline started on loopback ports, and publishers.

Every process started here is stopped by its owner's `stop()`; `cleanup_on_exit()` also turns
SIGTERM/SIGINT into a normal exit so that `finally` blocks run.
"""

import grp
import http.server
import json
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The smoke check in `make test` runs the quick benches on the debug build it already has.
BIN = os.environ.get("PULSE_BENCH_BIN") or os.path.join(ROOT, "target", "release", "pulse-edge")
CACHE = os.path.join(ROOT, "bench", ".cache")
SOURCE = os.path.join(CACHE, "src-1080p30-60s.flv")
TICK = os.sysconf("SC_CLK_TCK")
NGINX_TEMPLATE = os.path.join(ROOT, "nginx", "rtmp-baseline", "nginx.conf.template")
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
PUBLISH_KEY = "baseline-" + secrets.token_hex(8)


def cleanup_on_exit():
    """A SIGTERM or Ctrl-C to the bench must still run the callers' clean-up."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def require(*tools):
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (run `make bench`, which installs the bench tools)")
    if not os.path.exists(BIN):
        raise SystemExit("build first: make release")


def machine():
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}, load before start {os.getloadavg()[0]:.2f}"


def now_utc():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_binary(name, quick=False):
    """A `[[bench]]` target of ours (bench/<name>.rs), built and located. The smoke run (--quick,
    inside `make test`) builds it with the test (debug) profile, which reuses the suite's compiled
    dependencies instead of building them all again optimised; its figures are not kept anyway."""
    out = subprocess.run(
        ["cargo", "test" if quick else "bench", "--no-run", "--bench", name, "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    exe = None
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == name:
            exe = msg.get("executable") or exe
    if out.returncode != 0 or not exe:
        raise SystemExit(f"building bench/{name}.rs failed:\n" + out.stderr[-3000:])
    return exe


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


def wait_for_ports(proc, ports, timeout_s):
    """True once every loopback port accepts a connection; False if proc exits or time runs out."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


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


LOOPBACK_LOAD_LIMITS = {
    "PULSE_HTTP_MAX_CONNECTIONS_PER_IP": "20000",
    "PULSE_HTTP_MAX_BLOCKING_PER_IP": "20000",
    "PULSE_RTMP_MAX_CONNECTIONS_PER_IP": "1000",
    "PULSE_VIEWERS_MAX_SESSIONS_PER_TOKEN": "1000000",
}


class PulseServer:
    def __init__(self, workdir, env=None):
        self.data = tempfile.mkdtemp(dir=workdir)
        self.http = free_port()
        self.rtmp = free_port()
        self.env = dict(os.environ, PULSE_DATA_DIR=self.data, PULSE_HTTP_LISTEN=f"127.0.0.1:{self.http}",
                        PULSE_RTMP_LISTEN=f"127.0.0.1:{self.rtmp}",
                        PULSE_PIPELINES_DIR=os.path.join(ROOT, "pipelines"), RUST_LOG="info")
        # Every load client here comes from 127.0.0.1, like a CDN tier in front of the edge:
        # raise the per-address caps as docs/security.md tells operators behind a CDN to.
        # bench/hostile.py passes the defaults back in, since its attackers are single clients.
        self.env.update(LOOPBACK_LOAD_LIMITS)
        self.env.update(env or {})
        self.log_path = os.path.join(self.data, "server.log")
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, cwd=self.data,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        if not wait_for_ports(self.proc, (self.http, self.rtmp), 30):
            self.stop()
            raise SystemExit("server did not start:\n" + open(self.log_path).read())

    def create(self, name, profile=None):
        args = [BIN, "stream", "create", "--name", name] + (["--profile", profile] if profile else [])
        out = subprocess.run(args, env=self.env, cwd=self.data, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        stop_tree(self.proc, signal.SIGTERM)


def publish(url, loop=False, source=SOURCE):
    """ffmpeg sending a pre-encoded file in real time (`-re -c copy`), as an encoder would."""
    args = ["ffmpeg", "-v", "error", "-re"] + (["-stream_loop", "-1"] if loop else []) + \
        ["-i", source, "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except Exception:
        return 0, ""



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
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline") as f:
                title = f.read().split("\0")[0]
            if title.startswith("nginx: "):  # "nginx: master process /usr/sbin/nginx -p …" -> "nginx master"
                comm = "nginx " + title[len("nginx: "):].split(" process")[0]
            sample[(pid, start)] = (cpu, rss_mib(pid), comm)
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


# ---- the nginx-rtmp baseline --------------------------------------------------------------

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
    """nginx + nginx-rtmp from a template in nginx/rtmp-baseline/, on loopback ports, in a temp prefix."""

    def __init__(self, workdir, template=NGINX_TEMPLATE):
        self.prefix = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        os.chmod(self.prefix, 0o755)
        for sub in ("hls", "tmp"):
            os.makedirs(os.path.join(self.prefix, sub))
        self.auth = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AuthHandler)
        self.auth.answers = []
        threading.Thread(target=self.auth.serve_forever, daemon=True).start()
        self.http = free_port()
        self.rtmp = free_port()
        values = {
            "PREFIX": self.prefix, "RTMP_PORT": self.rtmp, "HTTP_PORT": self.http,
            "AUTH_PORT": self.auth.server_address[1],
            "USER": pwd.getpwuid(os.geteuid()).pw_name, "GROUP": grp.getgrgid(os.getegid()).gr_name,
        }
        conf = open(template).read()
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
        if not wait_for_ports(self.proc, (self.http, self.rtmp), 15):
            self.stop()
            raise SystemExit("nginx did not start:\n" + open(self.log_path).read())

    def publish_url(self, name, key=PUBLISH_KEY):
        return f"rtmp://127.0.0.1:{self.rtmp}/live/{name}?key={key}"

    def stop(self):
        stop_tree(self.proc, signal.SIGTERM)
        self.auth.shutdown()
        self.auth.server_close()


def versions():
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    rtmp = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-rtmp"],
                          capture_output=True, text=True).stdout.strip()
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]
    return f"nginx {nginx} + libnginx-mod-rtmp {rtmp or '?'}, ffmpeg {ffmpeg}"


