#!/usr/bin/env python3
"""A recording HTTP proxy in front of a local AWS emulator (moto), for the
JSON-protocol services (SSM, Secrets Manager): it says which operations were
called, and can answer some calls itself with errors the emulator does not
produce (access denied, a fault of the service).

Every request is relayed to --upstream unchanged (the Host header included,
so the signature still matches), except those an answer of --answers takes.
--answers is a JSON file: a list of
  {"target": "<X-Amz-Target, e.g. AmazonSSM.GetParameter>", "times": <n>,
   "status": <HTTP status>, "type": "<error code>", "message": "<text>"}
The first n requests for that target get that error (as the awsJson
protocols carry it: the code in __type and x-amzn-ErrorType); later ones
are relayed.

stdout: "LISTENING <port>" first, then one JSON line per request:
  {"n": <index>, "method": ..., "path": ..., "target": <X-Amz-Target or null>,
   "canned": bool, "status": <status sent back, or null>}
Request bodies and answers are never printed: they carry the secrets.
"""

import argparse
import http.client
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler

from common import BadRequest, Server, emit, fail, read_body, serve
from throttle_proxy import parse_upstream, relay

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def load_answers(path):
    try:
        with open(path, "rb") as f:
            answers = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read --answers {path}: {e}")
    if not isinstance(answers, list):
        fail("--answers must hold a JSON list")
    for i, answer in enumerate(answers):
        if not isinstance(answer, dict) or set(answer) != {"target", "times", "status", "type", "message"}:
            fail(f"answer {i}: needs exactly target, times, status, type and message")
        if not isinstance(answer["times"], int) or answer["times"] < 0:
            fail(f"answer {i}: times must be a whole number, 0 or more")
        answer["left"] = answer["times"]
    return answers


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aws-proxy"

    # Set by main().
    upstream = ("127.0.0.1", 80)
    answers = []
    lock = threading.Lock()
    requests = 0

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        pass

    def send(self, status, headers, body, reason=None):
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        # A relayed answer to HEAD keeps the emulator's Content-Length.
        if not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def canned(self, target):
        """The error to answer with instead of the emulator, if any."""
        with Handler.lock:
            for answer in self.answers:
                if answer["target"] == target and answer["left"] > 0:
                    answer["left"] -= 1
                    return answer
        return None

    def handle_any(self):
        try:
            body = read_body(self)
        except BadRequest:
            self.close_connection = True
            self.send(400, [("Content-Type", "text/plain; charset=utf-8")], b"bad request\n")
            return
        with Handler.lock:
            n = Handler.requests
            Handler.requests += 1
        target = self.headers.get("X-Amz-Target")
        line = {"n": n, "method": self.command, "path": self.path, "target": target}

        answer = self.canned(target)
        if answer is not None:
            emit({**line, "canned": True, "status": answer["status"]})
            payload = json.dumps({"__type": answer["type"], "message": answer["message"]}).encode()
            self.send(
                answer["status"],
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("x-amzn-ErrorType", answer["type"]),
                    ("x-amzn-RequestId", str(uuid.uuid4())),
                ],
                payload,
            )
            return

        try:
            status, reason, headers, payload = relay(self, self.upstream, body)
        except (OSError, http.client.HTTPException) as e:
            emit({**line, "canned": False, "status": None})
            self.send(502, [("Content-Type", "text/plain; charset=utf-8")], f"aws_proxy: upstream failed: {e}\n".encode())
            return
        emit({**line, "canned": False, "status": status})
        self.send(status, headers, payload, reason)


for _m in METHODS:
    setattr(Handler, "do_" + _m, Handler.handle_any)


def main():
    parser = argparse.ArgumentParser(description="Recording proxy in front of a local AWS emulator.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: the OS picks)")
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the emulator")
    parser.add_argument("--answers", help="JSON file of errors to answer with (see above)")
    args = parser.parse_args()
    Handler.upstream = parse_upstream(args.upstream)
    Handler.answers = load_answers(args.answers) if args.answers else []

    serve(Server(("127.0.0.1", args.port), Handler))


if __name__ == "__main__":
    main()
