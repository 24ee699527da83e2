"""One loopback HTTP server for every test that needs a peer: it answers as the test decides and records
what it was sent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; version=0.0.4"
    headers: tuple[tuple[str, str], ...] = ()


class LoopbackServer:
    """An HTTP server on 127.0.0.1 and a free port; `answer(request)` gives each reply. `url` ends in `path`."""

    def __init__(self, answer: Callable[[Request], Reply], path: str = "/metrics") -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = Request(self.command, self.path, self.rfile.read(length) if length else b"")
                with outer._lock:
                    outer.requests.append(request)
                reply = answer(request)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + path
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def received(self, path: str | None = None) -> list[Request]:
        """The requests so far, oldest first; only those for `path` if given."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback_server() -> Iterator[Callable[..., LoopbackServer]]:
    """Start loopback servers (`loopback_server(answer)`); all are closed after the test."""
    started: list[LoopbackServer] = []

    def start(answer: Callable[[Request], Reply], path: str = "/metrics") -> LoopbackServer:
        started.append(LoopbackServer(answer, path))
        return started[-1]

    yield start
    for server in started:
        server.close()
