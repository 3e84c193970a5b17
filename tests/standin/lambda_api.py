#!/usr/bin/env python3
"""An AWS Lambda Runtime API emulator (API version 2018-06-01).

Hands out the events of --events one invocation at a time: the next event
goes out only once the previous one got its response or error. When every
event has been answered it prints {"kind": "done"} once, and from then on
/next never answers.

stdout: "LISTENING <port>" first, then one JSON line per answer:
  {"kind": "response", "request_id": ..., "body": ...}
  {"kind": "error", "request_id": ..., "error_type": ..., "body": ...}
  {"kind": "init_error", "error_type": ..., "body": ...}
  {"kind": "invalid_request_id", "route": "response"|"error", "request_id": ..., "body": ...}
  {"kind": "done"}
"body" is the request body parsed as JSON, or its raw text if it is not JSON.
"""

import argparse
import json
import re
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from common import BadRequest, Server, emit, fail, read_body, serve

API = "/2018-06-01/runtime"
NEXT_PATH = API + "/invocation/next"
INIT_ERROR_PATH = API + "/init/error"
ANSWER_RE = re.compile(re.escape(API) + r"/invocation/([^/]+)/(response|error)")
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:drone-queue-cloudwatch"
TRACE_ID = "Root=1-00000000-000000000000000000000000;Sampled=0"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

def parse_body(raw):
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class Invocations:
    """The events and which of them are out; one invocation at a time."""

    def __init__(self, events, deadline_ms, stop):
        self.events = events
        self.deadline_ms = deadline_ms
        self.stop = stop
        self.cond = threading.Condition()
        self.handed = 0  # events handed out so far
        self.outstanding = None  # request id of the invocation being run
        self.done_printed = False

    def next(self, client_gone):
        """Blocks until an event can go out; returns (request_id, deadline, event),
        or None when stopping or when the client hung up while waiting (so that
        no event is handed to a connection nobody reads)."""
        with self.cond:
            while self.outstanding is not None or self.handed >= len(self.events):
                if self.stop.is_set() or client_gone():
                    return None
                self.cond.wait(0.1)
            if client_gone():
                return None
            event = self.events[self.handed]
            self.handed += 1
            self.outstanding = f"req-{self.handed}"
            deadline = int(time.time() * 1000) + self.deadline_ms
            return self.outstanding, deadline, event

    def answer(self, request_id, line):
        """Records the answer of the invocation that is out: prints `line`, and
        {"kind": "done"} after the last one. False if `request_id` is not the
        invocation that is out. Printing under the lock keeps the lines in order."""
        with self.cond:
            if request_id != self.outstanding:
                return False
            emit(line)
            self.outstanding = None
            self.cond.notify_all()
            self.maybe_done_locked()
            return True

    def maybe_done_locked(self):
        if not self.done_printed and self.outstanding is None and self.handed >= len(self.events):
            self.done_printed = True
            emit({"kind": "done"})

    def maybe_done(self):
        with self.cond:
            self.maybe_done_locked()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lambda-runtime-api-standin"

    def version_string(self):
        return self.server_version

    invocations = None  # set by main()

    def log_message(self, format, *args):
        pass

    def client_gone(self):
        """True if the client closed its connection (it is waiting for an answer,
        so anything readable is either more pipelined data or the end)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def respond(self, status, body=b"", content_type="application/json", extra=()):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        try:
            raw = read_body(self)
        except BadRequest as e:
            self.close_connection = True
            self.respond(400, json.dumps({"errorMessage": str(e), "errorType": "BadRequest"}).encode())
            return
        path = urlsplit(self.path).path
        inv = self.invocations

        if path == NEXT_PATH:
            if self.command != "GET":
                return self.respond(405, b"", None, [("Allow", "GET")])
            got = inv.next(self.client_gone)
            if got is None:  # shutting down, or the client left
                self.close_connection = True
                return
            request_id, deadline, event = got
            self.respond(
                200,
                json.dumps(event).encode("utf-8"),
                "application/json",
                [
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
                    ("Lambda-Runtime-Trace-Id", TRACE_ID),
                ],
            )
            return

        if path == INIT_ERROR_PATH:
            if self.command != "POST":
                return self.respond(405, b"", None, [("Allow", "POST")])
            emit(
                {
                    "kind": "init_error",
                    "error_type": self.headers.get("Lambda-Runtime-Function-Error-Type"),
                    "body": parse_body(raw),
                }
            )
            return self.respond(202, b'{"status":"OK"}')

        m = ANSWER_RE.fullmatch(path)
        if m:
            if self.command != "POST":
                return self.respond(405, b"", None, [("Allow", "POST")])
            request_id, route = unquote(m.group(1)), m.group(2)
            line = {"kind": route, "request_id": request_id}
            if route == "error":
                line["error_type"] = self.headers.get("Lambda-Runtime-Function-Error-Type")
            line["body"] = parse_body(raw)
            if inv.answer(request_id, line):
                return self.respond(202, b'{"status":"OK"}')
            # Not the invocation that is out (unknown or already answered):
            # the real API refuses it too.
            emit({"kind": "invalid_request_id", "route": route, "request_id": request_id, "body": line["body"]})
            message = {"errorMessage": f"Invalid request ID: {request_id}", "errorType": "InvalidRequestID"}
            return self.respond(400, json.dumps(message).encode())

        self.respond(404, b'{"errorMessage":"not found","errorType":"NotFound"}')


for _m in METHODS:
    setattr(Handler, "do_" + _m, Handler.handle_any)


def main():
    parser = argparse.ArgumentParser(description="AWS Lambda Runtime API emulator.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: the OS picks)")
    parser.add_argument("--events", required=True, help="JSON array, one event payload per invocation")
    parser.add_argument("--deadline-ms", type=int, default=5000, help="time each invocation may run")
    args = parser.parse_args()
    try:
        with open(args.events, "rb") as f:
            events = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read --events {args.events}: {e}")
    if not isinstance(events, list):
        fail("--events must hold a JSON array")
    if args.deadline_ms <= 0:
        fail("--deadline-ms must be positive")

    stop = threading.Event()
    Handler.invocations = Invocations(events, args.deadline_ms, stop)
    # With no events it is done at once.
    serve(Server(("127.0.0.1", args.port), Handler), stop, Handler.invocations.maybe_done)


if __name__ == "__main__":
    main()
