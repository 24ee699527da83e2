"""Loopback HTTP/1.1 servers for client tests: routes by path, a record of every request, optional TLS."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    client: tuple  # the client's (address, port): one per connection


Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Answer]


def ok(body: str | bytes) -> Route:
    data = body.encode() if isinstance(body, str) else body
    return lambda seen: (200, {"Content-Type": "text/plain; version=0.0.4"}, data)


def redirect(location: str, status: int = 307) -> Route:
    return lambda seen: (status, {"Location": location}, b"")


def needs(authorization: str, then: Route) -> Route:
    """`then` for requests carrying exactly this Authorization header, 401 for the rest."""
    return lambda seen: then(seen) if seen.headers.get("Authorization") == authorization else (401, {}, b"")


class LoopbackHttp:
    """Serves `routes` (path -> answer) on host:port (port 0: a free one) until closed."""

    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.requests: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, dict(self.headers), self.client_address)
                owner.requests.append(seen)
                route = owner.routes.get(urlsplit(self.path).path)
                status, headers, body = route(seen) if route else (404, {}, b"")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server_class = type("Server", (ThreadingHTTPServer,), {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        self._server = server_class((host, port), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        authority = f"[{host}]" if ":" in host else host
        self.base = f"{'https' if tls else 'http'}://{authority}:{self.port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def connections(self) -> int:
        return len({seen.client for seen in self.requests})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def make_certificate(directory: Path, names: str) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for `names`, e.g. "DNS:exporter.test,IP:127.0.0.1"."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required to make a test certificate"
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=exporter.test",
                    "-addext", f"subjectAltName={names}"], check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
