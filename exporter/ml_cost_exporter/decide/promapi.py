"""A small client for the Prometheus and Alertmanager HTTP APIs, with promtool/amtool's connection options.

Every exchange has a total deadline and a size limit; any failure becomes a PeerError (exit status 3)
naming the peer and what went wrong.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ml_cost_exporter.decide.errors import PeerError, UsageError

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
    if connection.insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=connection.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the CA file {connection.ca_file}: {exc}") from None


def _get(connection: Connection, path: str, params: Mapping[str, str] | None = None) -> object:
    """GET a JSON document from the peer within the connection's total deadline."""
    parsed = urllib.parse.urlparse(connection.url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f'{connection.name} URL "{connection.url}" is not an http:// or https:// URL')
    url = connection.url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if connection.bearer_token:
        request.add_header("Authorization", f"Bearer {connection.bearer_token}")
    elif connection.basic_auth:
        pair = base64.b64encode(":".join(connection.basic_auth).encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    deadline = time.monotonic() + connection.timeout_seconds
    context = _ssl_context(connection) if parsed.scheme == "https" else None
    where = f"{connection.name} at {connection.url}"
    try:
        with urllib.request.urlopen(request, timeout=connection.timeout_seconds, context=context) as response:
            body = _read_bounded(response, deadline, where)
    except urllib.error.HTTPError as exc:
        raise PeerError(_http_error(where, exc)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PeerError(f"{where} is unreachable: {reason}") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PeerError(f"{where} answered {path} with something that is not JSON") from None


def _read_bounded(response, deadline: float, where: str) -> bytes:
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise PeerError(f"{where} did not answer within the deadline")
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PeerError(f"{where} answered more than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)


def _http_error(where: str, exc: urllib.error.HTTPError) -> str:
    if exc.code in (401, 403):
        return f"{where} refused the request: HTTP {exc.code} (check the credentials flags)"
    detail = ""
    with contextlib.suppress(ValueError, AttributeError, OSError):
        detail = json.loads(exc.read(65536)).get("error", "")
    return f"{where} answered HTTP {exc.code}" + (f": {detail}" if detail else "")


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
