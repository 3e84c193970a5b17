"""Pieces the stand-in servers share: JSON-lines output, request bodies,
and a threaded HTTP server that tolerates clients hanging up."""

import json
import os
import signal
import sys
import threading
from http.server import ThreadingHTTPServer

_print_lock = threading.Lock()


def emit(obj):
    """Prints one JSON object as a line, whole, even from several threads."""
    with _print_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def serve(server, stop=None, listening=None):
    """Prints "LISTENING <port>", runs `listening` (if given), then serves
    until SIGTERM or SIGINT (or until `stop` is set), and shuts down."""
    stop = stop or threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"LISTENING {server.server_address[1]}", flush=True)
    if listening is not None:
        listening()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()


def fail(message):
    """Refuses bad arguments or input: a message and exit status 2."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr)
    sys.exit(2)


class BadRequest(Exception):
    pass


def read_body(handler):
    """Reads (and returns) the request body, by Content-Length or chunked, so
    the connection stays usable for the next request."""
    te = handler.headers.get("Transfer-Encoding")
    if te:
        if te.split(",")[-1].strip().lower() != "chunked":
            raise BadRequest("unsupported Transfer-Encoding")
        parts = []
        while True:
            line = handler.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise BadRequest("bad chunk size line")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                break
            data = handler.rfile.read(size)
            if len(data) != size or handler.rfile.readline(3).strip():
                raise BadRequest("truncated chunk")
            parts.append(data)
        while handler.rfile.readline(65537).strip():  # trailers
            pass
        return b"".join(parts)
    length = handler.headers.get("Content-Length")
    if length is None:
        return b""
    try:
        n = int(length)
    except ValueError:
        raise BadRequest("bad Content-Length")
    data = handler.rfile.read(n)
    if len(data) != n:
        raise BadRequest("truncated body")
    return data


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer (e.g. after its own timeout) is expected.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)
