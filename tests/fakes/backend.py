"""A fake backend connector service served over real HTTP, recording what it was sent.

In-process, on a free loopback port, in a daemon thread::

    with FakeBackend() as backend:
        backend.respond(404, {"error": "nope"})      # every answer from now on
        backend.fail_next(2)                          # next 2 requests: 503
        backend.close_next(1)                         # next request: connection closed, no answer
        backend.slow(1.5)                             # answers wait 1.5 s
        ... point the code under test at backend.base_url ...
        assert backend.requests[-1].headers["authorization"] == "Bearer x"

``http.server`` rather than uvicorn: a fault test needs to drop a connection without an
answer, which an ASGI app cannot do. Nagle is disabled on accepted sockets for the same reason
the OAuth fake passes ``IPPROTO_TCP``: keep-alive requests would otherwise wait ~40 ms for a
delayed ACK. ``GET /health`` answers 200 ``{"status": "ok"}`` (or 503 after
``healthy(False)``) and is subject to the switches like any other request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    #: lower-cased names; every header the server received
    headers: dict[str, str]
    body: bytes


@dataclass
class _Behaviour:
    status: int = 200
    body: bytes | None = None  # None: echo the request as JSON
    content_type: str = "application/json"
    fail_next: int = 0
    fail_status: int = 503
    close_next: int = 0
    delay: float = 0.0
    healthy: bool = True
    routes: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    content_encoding: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeBackend

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self.open_lock:
            self.open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """A stopped server must not go on answering on kept-alive connections."""
        with self.open_lock:
            conns = list(self.open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client pools connections
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet; headers may hold tokens
        pass

    def _handle(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        recorded = RecordedRequest(
            self.command,
            parts.path,
            dict(parse_qsl(parts.query, keep_blank_values=True)),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        action, status, payload, content_type, delay = fake._next_action(recorded)
        encoding = fake._content_encoding()
        if action == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) and closed its end
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class FakeBackend:
    """The fake service; every switch is thread-safe and takes effect on the next request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self._port = host, port
        self.base_url = ""
        self.port = 0
        self._lock = threading.Lock()
        self._b = _Behaviour()
        self._requests: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- switches ------------------------------------------------------------------------------

    def respond(
        self,
        status: int,
        body: bytes | Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        path: str | None = None,
        content_encoding: str | None = None,
    ) -> None:
        """Answer ``status`` with ``body`` (a mapping is sent as JSON; None echoes the request),
        for every request, or only for ``path``. ``content_encoding`` is sent as that header
        whatever the body is (``"gzip"`` with a plain body: an answer no client can decode)."""
        raw = json.dumps(body).encode() if isinstance(body, Mapping) else body
        with self._lock:
            self._b.content_encoding = content_encoding
            if path is not None:
                self._b.routes[path] = (status, raw if raw is not None else b"", content_type)
            else:
                self._b.status, self._b.body, self._b.content_type = status, raw, content_type

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` requests get ``status`` (503 by default)."""
        with self._lock:
            self._b.fail_next, self._b.fail_status = count, status

    def close_next(self, count: int) -> None:
        """The next ``count`` requests are read, then the connection is closed unanswered."""
        with self._lock:
            self._b.close_next = count

    def slow(self, seconds: float) -> None:
        """Every answer waits ``seconds`` first (0 to stop)."""
        with self._lock:
            self._b.delay = seconds

    def healthy(self, value: bool) -> None:
        with self._lock:
            self._b.healthy = value

    def reset(self) -> None:
        with self._lock:
            self._b = _Behaviour()
            self._requests.clear()

    # -- what happened -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def _content_encoding(self) -> str | None:
        with self._lock:
            return self._b.content_encoding

    def _next_action(self, req: RecordedRequest) -> tuple[str, int, bytes, str, float]:
        with self._lock:
            self._requests.append(req)
            b = self._b
            if b.close_next > 0:
                b.close_next -= 1
                return "close", 0, b"", "", 0.0
            if b.fail_next > 0:
                b.fail_next -= 1
                payload = json.dumps({"error": {"code": "UNAVAILABLE", "message": "injected"}}).encode()
                return "answer", b.fail_status, payload, "application/json", b.delay
            if req.path == "/health" and req.path not in b.routes:
                status = 200 if b.healthy else 503
                return (
                    "answer",
                    status,
                    json.dumps({"status": "ok" if b.healthy else "down"}).encode(),
                    ("application/json"),
                    b.delay,
                )
            if req.path in b.routes:
                status, payload, content_type = b.routes[req.path]
                return "answer", status, payload, content_type, b.delay
            if b.body is None:
                echo = {
                    "method": req.method,
                    "path": req.path,
                    "query": req.query,
                    "body": req.body.decode("utf-8", "replace"),
                }
                return "answer", b.status, json.dumps(echo).encode(), "application/json", b.delay
            return "answer", b.status, b.body, b.content_type, b.delay

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> Self:
        if self._server is not None:
            raise RuntimeError("fake backend already started")
        server = _Server((self.host, self._port))
        server.fake = self
        self.port = int(server.server_address[1])
        self._port = self.port  # a restart keeps the port (fault tests)
        self.base_url = f"http://{self.host}:{self.port}"
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=f"fake-backend-{self.port}"
        )
        self._server, self._thread = server, thread
        thread.start()
        with socket.create_connection((self.host, self.port), timeout=timeout):
            pass
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
