"""Loopback servers that misbehave the ways connc's HTTP client must survive.

* `recording_server`: answers each path as told (a redirect, a page) and records every
  request with its headers, so a test can tell where a credential went;
* `trickling_server`: answers one byte at a time, forever (never trips a socket timeout);
* `logging_proxy`: an HTTP proxy that records each request head it is sent (a forwarded
  `GET http://...` with its Authorization, or a `CONNECT host:443`) and refuses them all.

Each is a context manager on 127.0.0.1, port 0, torn down (connections closed) on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._net import LOOPBACK, serving


@dataclasses.dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""


@dataclasses.dataclass
class RecordingServer:
    port: int
    routes: dict[str, Reply | Callable[[Seen], Reply]]
    seen: list[Seen]

    def url(self, host: str = LOOPBACK) -> str:
        """The base URL, under `host`: `localhost` is this same server under another origin."""
        return f"http://{host}:{self.port}"


@contextlib.contextmanager
def recording_server(routes: dict[str, Reply | Callable[[Seen], Reply]] | None = None
                     ) -> Iterator[RecordingServer]:
    """Answers `routes[path]` (a Reply, or a function of the request), else 404."""
    state = RecordingServer(0, dict(routes or {}), [])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            seen = Seen(self.command, self.path, dict(self.headers.items()))
            state.seen.append(seen)
            route = state.routes.get(self.path.split("?", 1)[0], Reply(404))
            reply = route(seen) if callable(route) else route
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    with serving(httpd, "recording-server"):
        yield state


class _RawServer:
    """A listening socket whose connections each run `handle` on a thread of their own."""

    def __init__(self, handle: Callable[[socket.socket, threading.Event], None]) -> None:
        self._handle = handle
        self.stop = threading.Event()
        self.accepted = 0
        self._connections: list[socket.socket] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(5)
            self._handle(conn, self.stop)

    def __enter__(self) -> _RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.close()


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


@dataclasses.dataclass
class Trickler:
    url: str
    server: _RawServer


@contextlib.contextmanager
def trickling_server(head: bytes = b"HTTP/1.1 200 OK\r\n", interval: float = 0.2
                     ) -> Iterator[Trickler]:
    """Sends `head` to every request, then one more byte every `interval` seconds until the
    client goes away. The default head leaves the client in the middle of the header lines;
    a head ending in a blank line leaves it in the middle of a body."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        read_head(conn)
        conn.sendall(head)
        while not stop.wait(interval):
            conn.sendall(b"a")

    with _RawServer(handle) as server:
        yield Trickler(f"http://{LOOPBACK}:{server.port}", server)


@dataclasses.dataclass
class ProxyLog:
    url: str
    heads: list[str]


@contextlib.contextmanager
def logging_proxy() -> Iterator[ProxyLog]:
    """Records the head of every request sent to it, then refuses: 403 to a CONNECT, 502 to
    anything else. What a test asserts is what reached it, and a credential in clear would."""
    log = ProxyLog("", [])

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        head = read_head(conn).decode("latin-1")
        log.heads.append(head)
        status = "403 Forbidden" if head.startswith("CONNECT ") else "502 Bad Gateway"
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                     .encode())

    with _RawServer(handle) as server:
        log.url = f"http://{LOOPBACK}:{server.port}"
        yield log


__all__ = ["ProxyLog", "RecordingServer", "Reply", "Seen", "Trickler", "logging_proxy",
           "read_head", "recording_server", "trickling_server"]
