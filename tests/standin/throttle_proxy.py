#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a local CloudWatch emulator.

The first --throttle POST requests get CloudWatch's throttling error as the
AWS SDK sees it under CloudWatch's Smithy RPC v2 CBOR protocol (with AWS query
compatibility); every other request is relayed to --upstream unchanged (the
Host header included, so the request's signature still matches).

stdout: "LISTENING <port>" first, then one JSON line per request:
  {"n": <index among POSTs or null>, "method": ..., "path": ...,
   "action": <the Action of a Query-protocol form body, or null>,
   "throttled": bool, "upstream_status": <int or null>}

With --throttle 0 it only records, which is how tests count the calls made
to Auto Scaling and EC2 (both Query protocol) in front of moto.
"""

import argparse
import http.client
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from common import BadRequest, Server, emit, fail, read_body, serve

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",  # already answered with 100 Continue by this server
}

def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + n.to_bytes(4, "big")


def cbor_text(s):
    data = s.encode("utf-8")
    return cbor_head(3, len(data)) + data


def cbor_text_map(pairs):
    """CBOR map (major type 5) of text keys to text values (major type 3)."""
    out = cbor_head(5, len(pairs))
    for key, value in pairs:
        out += cbor_text(key) + cbor_text(value)
    return out


# a2 66 "__type" 6a "Throttling" 67 "message" 6d "Rate exceeded"
THROTTLING_BODY = cbor_text_map([("__type", "Throttling"), ("message", "Rate exceeded")])


def hop_by_hop(headers):
    """The hop-by-hop header names: the fixed ones and those named in Connection."""
    names = set(HOP_BY_HOP)
    for value in headers.get_all("Connection") or []:
        names.update(v.strip().lower() for v in value.split(",") if v.strip())
    return names


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "throttle-proxy"

    def version_string(self):
        return self.server_version

    # Set by main().
    upstream = ("127.0.0.1", 80)
    throttle = 0
    counter_lock = threading.Lock()
    posts = 0

    def log_message(self, format, *args):
        pass

    def send_all(self, status, headers, body, reason=None, relay=False):
        """Answers with `headers` and `body`. A relayed answer keeps the
        upstream's headers as they are (its Date and Server included); the
        Content-Length is always recomputed, except that an answer to HEAD
        keeps the upstream's."""
        if relay:
            self.send_response_only(status, reason)
        else:
            self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        bodiless = status in (204, 304) or status < 200
        has_length = any(name.lower() == "content-length" for name, _ in headers)
        if not bodiless and not has_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not bodiless and self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        try:
            body = read_body(self)
        except BadRequest:
            self.close_connection = True
            self.send_all(400, [("Content-Type", "text/plain; charset=utf-8")], b"bad request\n")
            return

        n = None
        if self.command == "POST":
            with Handler.counter_lock:
                n = Handler.posts
                Handler.posts += 1
        action = None
        if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            action = parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
        line = {"n": n, "method": self.command, "path": self.path, "action": action}

        if n is not None and n < self.throttle:
            emit({**line, "throttled": True, "upstream_status": None})
            self.send_all(
                400,
                [
                    ("smithy-protocol", "rpc-v2-cbor"),
                    ("Content-Type", "application/cbor"),
                    ("x-amzn-query-error", "Throttling;Sender"),
                    ("x-amzn-RequestId", str(uuid.uuid4())),
                ],
                THROTTLING_BODY,
            )
            return

        try:
            status, reason, headers, payload = relay(self, self.upstream, body)
        except (OSError, http.client.HTTPException) as e:
            emit({**line, "throttled": False, "upstream_status": None})
            self.send_all(
                502,
                [("Content-Type", "text/plain; charset=utf-8")],
                f"throttle_proxy: upstream failed: {e}\n".encode(),
            )
            return
        emit({**line, "throttled": False, "upstream_status": status})
        self.send_all(status, headers, payload, reason, relay=True)


for _m in METHODS:
    setattr(Handler, "do_" + _m, Handler.handle_any)



def relay(handler, upstream, body):
    """Sends the request `handler` is serving to `upstream` (host, port)
    unchanged, the Host header included (so that an AWS signature still
    matches), and returns (status, reason, headers, payload) of the answer,
    with the headers ready to pass back. Raises OSError or HTTPException
    when the upstream fails."""
    drop = hop_by_hop(handler.headers)
    conn = http.client.HTTPConnection(*upstream, timeout=60)
    try:
        conn.putrequest(handler.command, handler.path, skip_host=True, skip_accept_encoding=True)
        for name, value in handler.headers.items():
            if name.lower() not in drop and name.lower() != "content-length":
                conn.putheader(name, value)
        if body or handler.command in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    drop = hop_by_hop(resp.headers)
    headers = [
        (k, v)
        for k, v in resp.headers.items()
        # A relayed answer to HEAD keeps the upstream's Content-Length.
        if k.lower() not in drop and (k.lower() != "content-length" or handler.command == "HEAD")
    ]
    return resp.status, resp.reason, headers, payload


def parse_upstream(url):
    """Only a plain-HTTP URL on this machine's loopback is allowed."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        fail(f"--upstream must be an http:// URL, got {url!r}")
    if parts.hostname not in ("127.0.0.1", "localhost"):
        fail(f"--upstream must be on 127.0.0.1 or localhost, got {url!r}")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        fail(f"--upstream must be just http://127.0.0.1:PORT, got {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        fail(f"--upstream has a bad port: {url!r}")
    # Connect to the address itself rather than resolving "localhost".
    return ("127.0.0.1", port)


def main():
    parser = argparse.ArgumentParser(description="Throttling proxy in front of a CloudWatch emulator.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: the OS picks)")
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the emulator")
    parser.add_argument("--throttle", type=int, default=0, help="how many of the first POSTs to refuse")
    args = parser.parse_args()
    if args.throttle < 0:
        fail("--throttle must not be negative")
    Handler.upstream = parse_upstream(args.upstream)
    Handler.throttle = args.throttle

    serve(Server(("127.0.0.1", args.port), Handler))


if __name__ == "__main__":
    main()
