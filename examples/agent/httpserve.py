"""Small shared pieces of the stub LLM and the local services: a JSON request handler, a
thread-safe request log, and a serve loop that prints a READY line, stops on SIGTERM/SIGINT and
never outlives its --max-lifetime.

Standard library only, so the servers start fast and run under any Python 3.11.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any


class RequestLog:
    """Appends one JSON object per line to a file, flushed at once, from any thread."""

    def __init__(self, path: Path | None) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(entry, sort_keys=True)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1, one request per connection, JSON in and out, no access log on stderr."""

    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a client may take to send its request

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (inherited name)
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def request_entry(self, service: str, body: bytes) -> dict[str, Any]:
        """What the request log keeps of a request: never the Authorization header."""
        return {
            "service": service,
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "traceparent": self.headers.get("traceparent"),
            "content_length": len(body),
            "client_port": self.client_address[1],
            "time_ns": time.time_ns(),
        }


class QuietServer(http.server.ThreadingHTTPServer):
    """A threading server whose handler errors (e.g. a client that hung up) are one line."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        print(f"{type(self).__name__}: {client_address}: {err!r}", file=sys.stderr)


def bind(server_class: type[QuietServer], port: int,
         handler: type[http.server.BaseHTTPRequestHandler]) -> QuietServer:
    """Bind on 127.0.0.1:port (0 = any free port), with a message naming the port on failure."""
    try:
        return server_class(("127.0.0.1", port), handler)
    except OSError as e:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from e


def serve(servers: list[QuietServer], ready: str, max_lifetime: float) -> int:
    """Serve until SIGTERM/SIGINT or max_lifetime seconds; print `ready` once all listen."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                daemon=True) for s in servers]
    for t in threads:
        t.start()
    print(ready, flush=True)
    if not stop.wait(max_lifetime):
        print(f"stopping after --max-lifetime {max_lifetime} s", file=sys.stderr)
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


def port_of(server: QuietServer) -> int:
    sock: socket.socket = server.socket
    return int(sock.getsockname()[1])
