"""A small client for the Prometheus and Alertmanager HTTP APIs, with promtool/amtool's connection options.

Every exchange has a total deadline and a size limit; any failure becomes a PeerError (exit status 3)
naming the peer and what went wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ml_cost_exporter.decide.errors import PeerError, UsageError
from ml_cost_exporter.httpclient import (
    Authorization,
    BasicAuth,
    Client,
    HttpDeadlineError,
    HttpError,
    HttpSettings,
    HttpSizeError,
    HttpStatusError,
    HttpUrlError,
    TLSConfig,
    tls_context,
)

MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Connection:
    """How to reach one peer: its URL and credentials, as promtool and amtool take them."""

    name: str  # "Prometheus" or "Alertmanager", for messages
    url: str
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_seconds: float = 30.0


def read_secret(path: str | None, flag: str) -> str | None:
    """The first line of a credentials file, or None when no file was given."""
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _ssl_context(connection: Connection) -> ssl.SSLContext:
    """The connection's TLS context; a CA file that cannot be loaded is bad usage (exit status 2)."""
    try:
        return tls_context(_settings(connection).tls)
    except HttpError as exc:
        reason = str(exc).rpartition("cannot load: ")[2]
        raise UsageError(f"cannot load the CA file {connection.ca_file}: {reason}") from None


def _settings(connection: Connection) -> HttpSettings:
    """The shared client's settings for the connection's credentials and TLS options."""
    authorization = Authorization("Bearer", credentials=connection.bearer_token) if connection.bearer_token else None
    basic = None
    if connection.basic_auth and authorization is None:
        basic = BasicAuth(connection.basic_auth[0], password=connection.basic_auth[1])
    return HttpSettings(authorization, basic, TLSConfig(ca_file=connection.ca_file,
                                                        insecure_skip_verify=connection.insecure_skip_verify))


_CLIENTS: dict[Connection, Client] = {}  # one kept-alive client per peer for the command's queries
_MAX_CLIENTS = 4
_CLIENTS_LOCK = threading.Lock()


def _client(connection: Connection) -> Client:
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(connection)
        if client is None:
            if urllib.parse.urlparse(connection.url).scheme == "https":
                _ssl_context(connection)  # a bad CA file is bad usage, said once, before any query
            while len(_CLIENTS) >= _MAX_CLIENTS:
                _CLIENTS.pop(next(iter(_CLIENTS))).close()
            client = _CLIENTS[connection] = Client(connection.timeout_seconds, MAX_BODY_BYTES, _settings(connection),
                                                   user_agent="mlcost")
        return client


def _get(connection: Connection, path: str, params: Mapping[str, str] | None = None) -> object:
    """GET a JSON document from the peer within the connection's total deadline."""
    parsed = urllib.parse.urlparse(connection.url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f'{connection.name} URL "{connection.url}" is not an http:// or https:// URL')
    where = f"{connection.name} at {connection.url}"
    try:
        body = _client(connection).get(connection.url.rstrip("/") + path, params,
                                       {"Accept": "application/json"}).body
    except HttpStatusError as exc:
        raise PeerError(_http_error(where, exc)) from None
    except HttpDeadlineError:
        raise PeerError(f"{where} did not answer within the deadline of {connection.timeout_seconds:g}s") from None
    except HttpSizeError:
        raise PeerError(f"{where} answered more than {MAX_BODY_BYTES // (1024 * 1024)} MiB") from None
    except HttpUrlError as exc:
        raise UsageError(f'{connection.name} URL "{connection.url}": {exc}') from None
    except HttpError as exc:
        raise PeerError(f"{where} is unreachable: {exc}") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PeerError(f"{where} answered {path} with something that is not JSON") from None


def _http_error(where: str, exc: HttpStatusError) -> str:
    if exc.status in (401, 403):
        return f"{where} refused the request: HTTP {exc.status} (check the credentials flags)"
    detail = ""
    with contextlib.suppress(ValueError, AttributeError, RecursionError):
        detail = str(json.loads(exc.body).get("error", ""))[:300].replace("\n", " ")
    return f"{where} answered HTTP {exc.status}" + (f": {detail}" if detail else "")


@dataclass
class Prometheus:
    """Instant and range queries; counts the queries it sends (the benchmark reports them)."""

    connection: Connection
    progress: bool = False
    queries: int = field(default=0)

    def _data(self, path: str, params: Mapping[str, str]) -> object:
        self.queries += 1
        if self.progress:
            print(f"\rmlcost: query {self.queries}…", end="", file=sys.stderr, flush=True)
        document = _get(self.connection, path, params)
        if not isinstance(document, dict) or document.get("status") != "success":
            error = document.get("error", "no status") if isinstance(document, dict) else "not an object"
            raise PeerError(f"Prometheus at {self.connection.url} rejected a query: {error}")
        return document.get("data")

    def instant(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of every series of an instant vector at `at`; NaN and Inf dropped."""
        data = self._data("/api/v1/query", {"query": query, "time": f"{at:.3f}"})
        return [(labels, value) for labels, value in _vector(data, self.connection.url) if math.isfinite(value)]

    def range(self, query: str, start: float, end: float, step: float) -> list[tuple[dict[str, str],
                                                                                  list[tuple[float, float]]]]:
        """(labels, [(time, value)]) of every series of a range query."""
        data = self._data("/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                  "step": f"{step:g}"})
        return _matrix(data, self.connection.url)

    def has_series(self, metric: str, at: float, lookback: float) -> bool:
        """Whether `metric` has any sample in the `lookback` seconds before `at` (recorded series present?)."""
        query = f"count(count_over_time({metric}[{int(lookback)}s]))"
        return bool(self.instant(query, at))

    def done(self) -> None:
        if self.progress and self.queries:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def _vector(data: object, url: str) -> list[tuple[dict[str, str], float]]:
    if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
        raise PeerError(f"Prometheus at {url} answered an instant query without a vector")
    if data["resultType"] == "scalar":
        return [({}, _number(data.get("result", [0, "NaN"])[1], url))]
    out = []
    for item in data.get("result") or []:
        try:
            out.append(({str(k): str(v) for k, v in item["metric"].items()}, _number(item["value"][1], url)))
        except (KeyError, IndexError, TypeError, AttributeError):
            raise PeerError(f"Prometheus at {url} answered a malformed sample") from None
    return out


def _matrix(data: object, url: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise PeerError(f"Prometheus at {url} answered a range query without a matrix")
    out = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            points = [(float(t), _number(v, url)) for t, v in item["values"]]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise PeerError(f"Prometheus at {url} answered a malformed series") from None
        out.append((labels, [(t, v) for t, v in points if math.isfinite(v)]))
    return out


def _number(text: object, url: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PeerError(f"Prometheus at {url} answered a sample value that is not a number") from None


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    labels: Mapping[str, str]
    summary: str
    state: str


def alertmanager_alerts(connection: Connection) -> list[Alert]:
    """Alerts Alertmanager currently holds that are active (not silenced or inhibited)."""
    document = _get(connection, "/api/v2/alerts", {"active": "true", "silenced": "false", "inhibited": "false"})
    if not isinstance(document, list):
        raise PeerError(f"Alertmanager at {connection.url} answered /api/v2/alerts without a list")
    alerts = []
    for item in document:
        if not isinstance(item, dict) or not isinstance(item.get("labels"), dict):
            raise PeerError(f"Alertmanager at {connection.url} answered a malformed alert")
        labels = {str(k): str(v) for k, v in item["labels"].items()}
        annotations = item.get("annotations") if isinstance(item.get("annotations"), dict) else {}
        status = item.get("status") if isinstance(item.get("status"), dict) else {}
        alerts.append(Alert(labels.get("alertname", ""), labels.get("severity", ""), labels,
                            str(annotations.get("summary", "")), str(status.get("state", "active"))))
    return alerts
