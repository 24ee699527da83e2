"""The HTTP endpoint: landing page, /metrics (telemetry path), /healthz; TLS and basic auth.

Connections, deadlines and limits are the front server's (front.py); this module only routes.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import logging
import os
import threading

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from ml_cost_exporter import __version__
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.exposition.front import FrontServer, Limits, Request, Response
from ml_cost_exporter.exposition.webconfig import BasicAuth, Verdict, WebConfig, load_web_config

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
        self.auth = auth  # swapped whole when the web config is reloaded

    def __call__(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", (("Allow", "GET, HEAD"), TEXT))
        verdict = self._authorize(request)
        if verdict is not Verdict.ALLOWED:
            return self._refusal(verdict)
        path = request.path
        if path == self._telemetry_path:
            return self._metrics(request)
        if path == "/healthz":
            return Response(200, b"ok\n", (TEXT,))
        if path == "/":
            page = LANDING.format(version=__version__, path=html.escape(self._telemetry_path))
            return Response(200, page.encode(), (("Content-Type", "text/html; charset=utf-8"),))
        return Response(404, b"not found\n", (TEXT,))

    def screen(self, request: Request) -> Response | None:
        """Answered without a worker where no bcrypt run is needed: a cached refusal, or every slot busy."""
        credentials = self._credentials(request)
        auth = self.auth
        if auth is None or credentials is None:
            return None
        verdict = auth.peek(*credentials)
        return None if verdict in (None, Verdict.ALLOWED) else self._refusal(verdict)

    @staticmethod
    def _refusal(verdict: Verdict) -> Response:
        if verdict is Verdict.BUSY:
            return Response(429, b"too many password checks at once, retry\n", (("Retry-After", "1"), TEXT))
        return Response(401, b"", (("WWW-Authenticate", 'Basic realm="ml-cost-exporter"'),))

    @staticmethod
    def _credentials(request: Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password

    def _authorize(self, request: Request) -> Verdict:
        auth = self.auth
        if auth is None:
            return Verdict.ALLOWED
        credentials = self._credentials(request)
        return Verdict.DENIED if credentials is None else auth.check(*credentials)

    def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._registry)
        headers = [("Content-Type", content_type)]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, body, tuple(headers))


def _auth(web_config: WebConfig | None) -> BasicAuth | None:
    return BasicAuth(web_config.basic_auth_users) if web_config and web_config.basic_auth_users else None


def start_http_server(address: str, registry: CollectorRegistry, telemetry_path: str,
                      web_config: WebConfig | None,
                      limits: Limits | None = None) -> tuple[FrontServer, threading.Thread]:
    """Listen on `address` and serve in a background thread; TLS and basic auth as `web_config` says."""
    host, port = parse_listen_address(address)
    context = web_config.ssl_context() if web_config else None
    routes = Routes(registry, telemetry_path, _auth(web_config))
    server = FrontServer((host, port), routes, limits or Limits(), context,
                         server_name=f"ml-cost-exporter/{__version__}", screen=routes.screen)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread


def _file_identity(path: str | None) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path) if path else None
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size) if stat else None


class WebConfigReloader:
    """Reloads --web.config.file when asked (SIGHUP) or when it or its TLS files change; keeps the last good one."""

    def __init__(self, path: str, server: FrontServer, interval: float = 2.0) -> None:
        self._path = path
        self._server = server
        self._interval = interval
        self._files: tuple[str | None, ...] = (path,)
        self._seen = self._identities()
        self._requested = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="web-config", daemon=True)

    def start(self, config: WebConfig | None) -> WebConfigReloader:
        """Watch from now on; `config` is the one in force, whose TLS files are watched too."""
        self._watch_files_of(config)
        self._thread.start()
        return self

    def request(self) -> None:
        """Reload at the next chance (safe from a signal handler)."""
        self._requested = True
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5.0)

    def reload(self) -> bool:
        """Load the file again and put it in force; on error log one line and keep the config in force."""
        try:
            config = load_web_config(self._path)
            self._server.use_context(config.ssl_context())
        except (ConfigError, ValueError) as exc:
            log.error("web config reload failed, keeping the last good one: %s%s", exc,
                      "" if isinstance(exc, ConfigError) else f" ({self._path})")
            return False
        self._server.handler.auth = _auth(config)
        self._watch_files_of(config)
        log.info("web config reloaded from %s", self._path)
        return True

    def _watch_files_of(self, config: WebConfig | None) -> None:
        tls_files = (config.cert_file, config.key_file, config.client_ca_file) if config else ()
        self._files = (self._path, *tls_files)
        self._seen = self._identities()

    def _identities(self) -> tuple:
        return tuple(_file_identity(f) for f in self._files)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            current = self._identities()
            if self._requested or current != self._seen:
                self._requested = False
                self._seen = current
                self.reload()
