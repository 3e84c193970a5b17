#!/usr/bin/env python3
"""A stand-in Drone 2.x server: answers GET {prefix}/api/queue from a script of steps.

Request N to the queue (0-based) uses step min(N, len-1). A step is an object:
  fixture       file whose bytes are served verbatim (relative to the script's folder)
  body          text served instead (UTF-8)
  status        HTTP status (default 200)
  content_type  default application/json
  delay         seconds to wait before answering (other requests are not held up)
  auth          "admin" (default): wrong token -> 401; "user": wrong token -> 401,
                right token -> 403; "any": no check. Checked before delay and body.
  close         true: drop the connection without answering

stdout: "LISTENING <port>" first, then one JSON line per request:
  {"n": <queue request index or null>, "method": ..., "path": ..., "auth_ok": bool,
   "t": <Unix time of arrival, seconds, float>}
The token never appears in the output; should a client put it in the URL, it
is replaced by "[redacted]" in "path".

A test changes the answers while the server runs with PUT /_standin/script and
a new JSON array of steps as the body (fixture paths relative to --script's
folder): the next queue request uses its first step, and so on. It answers 204,
or 400 with the reason, and prints nothing.
"""

import argparse
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from common import BadRequest, Server, emit, fail, read_body, serve

STEP_KEYS = {"fixture", "body", "status", "content_type", "delay", "auth", "close"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

CONTROL_PATH = "/_standin/script"


def load_script(path):
    try:
        with open(path, "rb") as f:
            steps = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read --script {path}: {e}")
    return parse_steps(steps, os.path.dirname(os.path.abspath(path)), fail)


class ScriptError(Exception):
    pass


def raise_script_error(message):
    raise ScriptError(message)


def parse_steps(steps, base, fail):
    """Checks and loads steps; `fail` is called with the reason for bad input."""
    if not isinstance(steps, list) or not steps:
        fail("the script must be a non-empty JSON array of steps")
    loaded = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            fail(f"step {i} is not an object")
        unknown = set(step) - STEP_KEYS
        if unknown:
            fail(f"step {i} has unknown keys {sorted(unknown)}")
        if "fixture" in step and "body" in step:
            fail(f"step {i} has both fixture and body")
        if step.get("auth", "admin") not in ("admin", "user", "any"):
            fail(f"step {i}: auth must be admin, user or any")
        status = step.get("status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            fail(f"step {i}: status must be an integer 100-599")
        delay = step.get("delay", 0)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            fail(f"step {i}: delay must be a non-negative number")
        if "fixture" in step:
            # Read once at start, so a missing file fails loudly before any test runs.
            fixture = os.path.join(base, step["fixture"])
            try:
                with open(fixture, "rb") as f:
                    payload = f.read()
            except OSError as e:
                fail(f"step {i}: cannot read fixture: {e}")
        else:
            payload = str(step.get("body", "")).encode("utf-8")
        loaded.append(
            {
                "payload": payload,
                "status": status,
                "content_type": step.get("content_type", "application/json"),
                "delay": float(delay),
                "auth": step.get("auth", "admin"),
                "close": bool(step.get("close", False)),
            }
        )
    return loaded


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drone-standin"

    def version_string(self):
        return self.server_version

    # Set on the class by main().
    token = ""
    queue_path = "/api/queue"
    steps = []
    base = "."
    counter_lock = threading.Lock()
    counter = 0
    # Queue request index at which the current steps began.
    script_start = 0

    def log_message(self, format, *args):
        pass

    def respond(self, status, body=b"", content_type=None, extra=()):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        no_body = status in (204, 304) or status < 200
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        arrived = time.time()
        try:
            body = read_body(self)
        except BadRequest:
            self.close_connection = True
            self.respond(400, b"bad request\n", "text/plain; charset=utf-8")
            return

        path = urlsplit(self.path).path
        if path == CONTROL_PATH and self.command == "PUT":
            self.replace_script(body)
            return
        auth_ok = hmac.compare_digest(
            self.headers.get("Authorization", "").encode("latin-1", "replace"),
            ("Bearer " + self.token).encode("utf-8"),
        )
        logged_path = self.path.replace(self.token, "[redacted]") if self.token else self.path

        n = None
        if path == self.queue_path and self.command == "GET":
            with Handler.counter_lock:
                n = Handler.counter
                Handler.counter += 1
                steps, start = Handler.steps, Handler.script_start
        emit({"n": n, "method": self.command, "path": logged_path, "auth_ok": auth_ok, "t": arrived})

        if path != self.queue_path:
            self.respond(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if n is None:
            self.respond(405, b"", None, [("Allow", "GET")])
            return

        step = steps[min(n - start, len(steps) - 1)]
        if step["auth"] != "any":
            if not auth_ok:
                self.respond(401, b'{"message":"Unauthorized"}\n', "application/json")
                return
            if step["auth"] == "user":
                self.respond(403, b'{"message":"Forbidden"}\n', "application/json")
                return
        if step["delay"]:
            time.sleep(step["delay"])
        if step["close"]:
            # No response at all; the server closes the socket after this.
            self.close_connection = True
            return
        self.respond(step["status"], step["payload"], step["content_type"])


    def replace_script(self, body):
        try:
            steps = parse_steps(json.loads(body), Handler.base, raise_script_error)
        except (ValueError, ScriptError) as e:
            self.respond(400, f"{e}\n".encode(), "text/plain; charset=utf-8")
            return
        with Handler.counter_lock:
            Handler.steps = steps
            Handler.script_start = Handler.counter
        self.respond(204)


for _m in METHODS:
    setattr(Handler, "do_" + _m, Handler.handle_any)


def main():
    parser = argparse.ArgumentParser(description="Stand-in Drone 2.x queue API.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: the OS picks)")
    parser.add_argument("--token", required=True, help="the admin token the server accepts")
    parser.add_argument("--prefix", default="", help="path prefix in front of /api/queue")
    parser.add_argument("--script", required=True, help="JSON array of steps")
    args = parser.parse_args()
    if not args.token:
        fail("--token must not be empty")

    prefix = args.prefix.strip("/")
    Handler.queue_path = ("/" + prefix if prefix else "") + "/api/queue"
    Handler.token = args.token
    Handler.steps = load_script(args.script)
    Handler.base = os.path.dirname(os.path.abspath(args.script))

    server = Server(("127.0.0.1", args.port), Handler)
    serve(server)


if __name__ == "__main__":
    main()
