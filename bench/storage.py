#!/usr/bin/env python3
"""Object storage (issue 6): what pushing every part, segment and init to an S3-compatible
bucket costs next to the edge's own disk, and how memory behaves while the bucket is away.

1. Upload cost: one passthrough stream of the cached 1080p source (4.6 Mbit/s), the `fs`
   backend and the `s3` backend (s3s-fs on loopback, SigV4 checked) alternating run by run.
   Pulse Edge CPU seconds per minute of media, peak RSS, and (s3) the upload lag histogram.
2. Outage: the same stream on `s3`, the bucket killed for --outage seconds and started again,
   with and without recording (an app with `record`). Upload buffer and RSS sampled every
   second; time to drain after the bucket returns; objects dropped.

usage: python3 bench/storage.py [--quick] [--seconds 60] [--outage 60] [--repeats 3]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ACCESS, SECRET, BUCKET = "bench-access", "bench-secret-0123456789", "media"


def s3_server_binary(quick):
    """bench/s3_server.rs: s3s-fs as a process the script can kill and start again."""
    return common.bench_binary("s3_server", quick)


class S3:
    def __init__(self, exe, workdir):
        self.exe, self.root, self.port = exe, tempfile.mkdtemp(dir=workdir), common.free_port()
        os.makedirs(os.path.join(self.root, BUCKET))
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.exe, str(self.port), self.root, ACCESS, SECRET],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not common.wait_for_ports(self.proc, (self.port,), 20):
            raise SystemExit("s3 server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def env(self):
        return {"PULSE_STORAGE_BACKEND": "s3", "PULSE_STORAGE_BUCKET": BUCKET,
                "PULSE_STORAGE_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
                "PULSE_STORAGE_FORCE_PATH_STYLE": "true", "PULSE_STORAGE_ACCESS_KEY_ID": ACCESS,
                "PULSE_STORAGE_SECRET_ACCESS_KEY": SECRET, "PULSE_STORAGE_TIMEOUT_SECS": "3"}


def metrics(server):
    status, text = common.get(f"http://127.0.0.1:{server.http}/metrics")
    return text if status == 200 else ""


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def histogram_quantiles(text, name, quantiles=(0.5, 0.95)):
    """Quantiles (upper bucket bounds) of a classic Prometheus histogram."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    return {q: next(le for le, count in buckets if count >= q * total) for q in quantiles}


def create_stream(server, record):
    run = lambda *a: json.loads(subprocess.run([common.BIN, *a], env=server.env, cwd=server.data, check=True,
                                               capture_output=True, text=True).stdout)
    app = ["--app", run("app", "create", "--name", "rec", "--record")["id"]] if record else []
    return run("stream", "create", "--name", "bench", "--profile", "passthrough", *app)


def one_run(workdir, backend, s3, seconds):
    env = s3.env() if backend == "s3" else {}
    server = common.PulseServer(workdir, env)
    publisher = None
    try:
        stream = create_stream(server, record=False)
        publisher = common.publish(f"{stream['rtmp_url']}/{stream['stream_key']}", loop=True)
        time.sleep(4)  # past the first segments
        cpu0, t0, peak = common.cpu_seconds(server.pid), time.monotonic(), 0.0
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            peak = max(peak, common.rss_mib(server.pid))
        cpu = common.cpu_seconds(server.pid) - cpu0
        elapsed = time.monotonic() - t0
        text = metrics(server)
        lag = histogram_quantiles(text, "pulse_storage_upload_lag_seconds") if backend == "s3" else {}
        return {"backend": backend, "cpu_s_per_min": cpu / elapsed * 60, "peak_rss_mib": peak,
                "upload_lag_p50_s": lag.get(0.5), "upload_lag_p95_s": lag.get(0.95),
                "uploads": metric_sum(text, "pulse_storage_upload_lag_seconds_count")}
    finally:
        if publisher:
            publisher.kill()
            publisher.wait()
        server.stop()


def outage_run(workdir, s3, record, outage, before=8, after_limit=120):
    server = common.PulseServer(workdir, s3.env())
    publisher = None
    samples = []
    try:
        stream = create_stream(server, record=record)
        publisher = common.publish(f"{stream['rtmp_url']}/{stream['stream_key']}", loop=True)
        time.sleep(before)
        base_rss = common.rss_mib(server.pid)
        s3.stop()
        t0 = time.monotonic()
        while time.monotonic() - t0 < outage:
            time.sleep(1)
            samples.append((common.rss_mib(server.pid),
                            metric_sum(metrics(server), "pulse_storage_upload_buffer_bytes") / 2**20))
        s3.start()
        back = time.monotonic()
        drained = None
        while time.monotonic() - back < after_limit:
            text = metrics(server)
            if metric_sum(text, "pulse_storage_upload_buffer_bytes") < 2 * 2**20:
                drained = time.monotonic() - back
                break
            time.sleep(0.5)
        text = metrics(server)
        return {"record": record, "outage_s": outage, "rss_before_mib": base_rss,
                "rss_peak_mib": max(r for r, _ in samples), "buffer_peak_mib": max(b for _, b in samples),
                "buffer_end_of_outage_mib": samples[-1][1], "drain_s": drained,
                "dropped": metric_sum(text, "pulse_storage_uploads_dropped_total"),
                "retries": metric_sum(text, "pulse_storage_upload_retries_total")}
    finally:
        if publisher:
            publisher.kill()
            publisher.wait()
        server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smoke run: short, nothing to keep")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--outage", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.outage, args.repeats = 6, 4, 1
    common.cleanup_on_exit()
    common.require("ffmpeg")
    common.make_source()
    exe = s3_server_binary(args.quick)
    workdir = tempfile.mkdtemp(prefix="pulse-bench-storage-")
    s3 = None
    try:
        s3 = S3(exe, workdir)
        runs = []
        for _ in range(args.repeats):
            for backend in ("fs", "s3"):
                runs.append(one_run(workdir, backend, s3, args.seconds))
                print(json.dumps(runs[-1]), flush=True)
        outages = [outage_run(workdir, s3, record, args.outage) for record in (False, True)]
        for o in outages:
            print(json.dumps(o), flush=True)
        med = lambda xs: sorted(xs)[len(xs) // 2]
        fs_cpu = med([r["cpu_s_per_min"] for r in runs if r["backend"] == "fs"])
        s3_cpu = med([r["cpu_s_per_min"] for r in runs if r["backend"] == "s3"])
        print(json.dumps({"summary": {"machine": common.machine(), "date": common.now_utc(),
                                      "fs_cpu_s_per_min": fs_cpu, "s3_cpu_s_per_min": s3_cpu,
                                      "s3_over_fs": s3_cpu / fs_cpu if fs_cpu else None}}), flush=True)
        if args.quick:
            bad = [o for o in outages if o["drain_s"] is None]
            if bad or any(r["uploads"] == 0 for r in runs if r["backend"] == "s3"):
                raise SystemExit(f"storage bench smoke: nothing uploaded or the buffer never drained: {bad}")
    finally:
        if s3:
            s3.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
