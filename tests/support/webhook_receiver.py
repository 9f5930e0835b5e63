#!/usr/bin/env python3
"""A webhook receiver for the end-to-end tests: a real HTTP server on
loopback that verifies every request with the `standardwebhooks` package
from PyPI (an implementation independent of ours) and appends what it got
to a JSON-lines log.

Behaviour is fixed at start by flags: fail with --status for the first
--fail-for seconds (or for ever with --fail-for -1), answer slowly with
--delay, send Retry-After with --retry-after.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--port-file", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--secret", action="append", default=[],
                    help="whsec_ secret(s); a request verifies if any accepts it")
parser.add_argument("--fail-for", type=float, default=0.0)
parser.add_argument("--status", type=int, default=500)
parser.add_argument("--retry-after", default=None)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()

started = time.time()
lock = threading.Lock()
verifiers = [Webhook(s) for s in args.secret]


def verify(body, headers):
    errors = []
    for wh in verifiers:
        try:
            wh.verify(body, headers)
            return True, None
        except WebhookVerificationError as e:
            errors.append(str(e))
    return False, "; ".join(errors) or "no secret configured"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified, error = verify(body, headers)
        if args.delay:
            time.sleep(args.delay)
        failing = args.fail_for < 0 or time.time() - started < args.fail_for
        status = args.status if failing else 200
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        record = {
            "received_at": time.time(),
            "path": self.path,
            "webhook_id": headers.get("webhook-id"),
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "signatures": headers.get("webhook-signature", "").count("v1,"),
            "verified": verified,
            "error": error,
            "answered": status,
            "body": parsed,
        }
        with lock, open(args.log, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        if failing and args.retry_after is not None:
            self.send_header("Retry-After", args.retry_after)
        if failing and 300 <= status < 400:
            # Where a client that follows redirects would go next.
            self.send_header("Location", "/followed")
        reply = b"nope" if failing else b"ok"
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(args.port_file + ".tmp", args.port_file)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
