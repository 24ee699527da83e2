"""The HTTP endpoint: landing page, /metrics (telemetry path), /healthz; TLS and basic auth.

Connections, deadlines and limits are the front server's (front.py); this module only routes.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import logging
import threading

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from ml_cost_exporter import __version__
from ml_cost_exporter.exposition.front import FrontServer, Limits, Request, Response
from ml_cost_exporter.exposition.webconfig import BasicAuth, WebConfig

log = logging.getLogger(__name__)
TEXT = ("Content-Type", "text/plain; charset=utf-8")

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


class Routes:
    """The exporter's pages: metrics at the telemetry path, /healthz and a landing page; basic auth first."""

    def __init__(self, registry: CollectorRegistry, telemetry_path: str, auth: BasicAuth | None) -> None:
        self._registry = registry
        self._telemetry_path = telemetry_path
        self._auth = auth

    def __call__(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", (("Allow", "GET, HEAD"), TEXT))
        if not self._authorized(request):
            return Response(401, b"", (("WWW-Authenticate", 'Basic realm="ml-cost-exporter"'),))
        path = request.path
        if path == self._telemetry_path:
            return self._metrics(request)
        if path == "/healthz":
            return Response(200, b"ok\n", (TEXT,))
        if path == "/":
            page = LANDING.format(version=__version__, path=html.escape(self._telemetry_path))
            return Response(200, page.encode(), (("Content-Type", "text/html; charset=utf-8"),))
        return Response(404, b"not found\n", (TEXT,))

    def _authorized(self, request: Request) -> bool:
        if self._auth is None:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return self._auth.check(user, password)

    def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._registry)
        headers = [("Content-Type", content_type)]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, body, tuple(headers))


def start_http_server(address: str, registry: CollectorRegistry, telemetry_path: str,
                      web_config: WebConfig | None,
                      limits: Limits | None = None) -> tuple[FrontServer, threading.Thread]:
    """Listen on `address` and serve in a background thread; TLS and basic auth as `web_config` says."""
    host, port = parse_listen_address(address)
    auth = BasicAuth(web_config.basic_auth_users) if web_config and web_config.basic_auth_users else None
    context = web_config.ssl_context() if web_config else None
    server = FrontServer((host, port), Routes(registry, telemetry_path, auth), limits or Limits(), context,
                         server_name=f"ml-cost-exporter/{__version__}")
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread
