"""Real TCP peers for the client tests.

``DroppingProxy`` forwards each HTTP request to the live service and hands back its answer, except
for the requests a rule picks: those reach the service (which commits them), and then the proxy
closes the client's connection without a byte of the answer, as a lost response does.

``ScriptedServer`` answers from a list of (status, headers, body), for the statuses the real
service gives only under faults (502, 503 and 504 with or without Retry-After), and records
what each attempt sent.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    response: bytes = b""
    dropped: bool = False

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1]) if self.response else 0

    def response_headers(self) -> dict[str, str]:
        head = self.response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


def _read_request(stream: Any) -> tuple[bytes, str, str, dict[str, str], bytes] | None:
    line = stream.readline(65536)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    raw_headers: list[bytes] = []
    while True:
        header = stream.readline(65536)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
        raw_headers.append(header)
    body = stream.read(int(headers.get("content-length", "0") or 0))
    raw = line + b"".join(raw_headers) + b"\r\n" + body
    return raw, method, path, headers, body


def _read_response(stream: Any) -> bytes:
    """One whole HTTP answer, by its Content-Length (gunicorn may keep the connection open)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline(65536)
        if not line:
            return head
        head += line
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return head + (stream.read(int(lengths[0])) if lengths else b"")


class DroppingProxy:
    def __init__(self, upstream_port: int, drop: Callable[[Exchange], bool]) -> None:
        self.upstream_port = upstream_port
        self.drop = drop
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        # shutdown() wakes the accept() the serving thread blocks in; close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        # One upstream connection per client connection, kept alive as long as the client's.
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        with conn, upstream, conn.makefile("rb") as stream, upstream.makefile("rb") as answers:
            while True:
                request = _read_request(stream)
                if request is None:
                    return
                raw, method, path, headers, body = request
                exchange = Exchange(method, path, headers, body)
                upstream.sendall(raw)
                exchange.response = _read_response(answers)
                with self._lock:
                    exchange.dropped = self.drop(exchange)
                    self.exchanges.append(exchange)
                if exchange.dropped:
                    # The service answered (and committed); the client hears nothing.
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(exchange.response)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Attempt:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


def _caller_gone(conn: socket.socket) -> bool:
    """True when the caller has closed its end: the socket reads as end-of-file."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class ScriptedServer:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.attempts: list[Attempt] = []
        # Set before the answer is written, and only if the caller is still connected then: a
        # caller that has read the answer therefore always finds it set (no race with this thread).
        self.answered = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.attempts.append(
                    Attempt(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.monotonic(),
                    )
                )
                reply = server.replies.pop(0) if server.replies else Reply(500, {"detail": "script exhausted"})
                if reply.delay:
                    time.sleep(reply.delay)
                if not _caller_gone(self.connection):
                    server.answered.set()
                content = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a caller gone
                    self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
