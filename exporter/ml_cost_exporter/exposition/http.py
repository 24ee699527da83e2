"""The HTTP endpoint: landing page, /metrics (telemetry path), /healthz; TLS and basic auth."""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from ml_cost_exporter import __version__
from ml_cost_exporter.exposition.webconfig import BasicAuth, WebConfig

log = logging.getLogger(__name__)

LANDING = """<!DOCTYPE html>
<html><head><title>ml-cost-exporter</title></head>
<body><h1>ml-cost-exporter {version}</h1>
<p>Prices what this pod uses: cost per 1,000 inferences, idle GPU cost, budget burn.</p>
<ul><li><a href="{path}">Metrics</a></li><li><a href="/healthz">Health</a></li></ul>
</body></html>
"""


def parse_listen_address(address: str) -> tuple[str, int]:
    """`host:port`, `:port` or `[v6]:port` to (host, port); an empty host listens everywhere."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'invalid listen address "{address}": expected host:port')
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    telemetry_path: str
    auth: BasicAuth | None


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"ml-cost-exporter/{__version__}"

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _authorized(self) -> bool:
        auth = self.server.auth
        if auth is None:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            if auth.check(user, password):
                return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="ml-cost-exporter"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path == self.server.telemetry_path:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(self.server.registry)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        elif path == "/healthz":
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/":
            page = LANDING.format(version=__version__, path=html.escape(self.server.telemetry_path))
            self._reply(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET


def start_http_server(address: str, registry: CollectorRegistry, telemetry_path: str,
                      web_config: WebConfig | None) -> tuple[_Server, threading.Thread]:
    host, port = parse_listen_address(address)
    server_class = _Server6 if ":" in host else _Server
    server = server_class((host, port), _Handler)
    server.registry = registry
    server.telemetry_path = telemetry_path
    server.auth = BasicAuth(web_config.basic_auth_users) if web_config and web_config.basic_auth_users else None
    context = web_config.ssl_context() if web_config else None
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread
