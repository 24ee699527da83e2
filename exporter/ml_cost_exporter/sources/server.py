"""The inference server's own counters: fetched from its /metrics, turned into per-model deltas.

A broken or hostile server never takes the exporter down: the body is capped,
undecodable bytes are replaced, bad values are counted and skipped, and the
number of series tracked per source is capped with the excess counted.
Counter resets are handled as Prometheus `rate()` does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ml_cost_exporter.config.schema import Model
from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern
from ml_cost_exporter.sources.fetch import Fetcher, FetchError

log = logging.getLogger(__name__)

ModelKey = tuple[str, str]
MAX_BACKOFF_SECONDS = 300.0


@dataclass
class ServerReading:
    """What one fetch of one server gave: per-model deltas since the last fetch."""

    ok: bool
    deltas: dict[ModelKey, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    series: int = 0
    dropped_series: int = 0
    invalid_samples: int = 0


@dataclass(frozen=True)
class _Binding:
    """One model's claim on one metric name of the server."""

    model: ModelKey
    quantity: str
    scale: float
    model_label: str | None
    model_value: str
    version_label: str | None
    version_value: str | None
    match: tuple

    def accepts(self, labels: dict[str, str]) -> bool:
        if self.model_label is not None and labels.get(self.model_label) != self.model_value:
            return False
        if self.version_value is not None and labels.get(self.version_label) != self.version_value:
            return False
        return all(pattern.fullmatch(labels.get(name, "")) for name, pattern in self.match)


class ServerSource:
    """One inference server URL and the models served behind it."""

    def __init__(self, url: str, models: Sequence[Model], timeout: float, max_bytes: int, max_series: int,
                 interval: float, monotonic: Callable[[], float] = time.monotonic,
                 fetch: Callable[[str], str] | None = None) -> None:
        self.url = url
        self.name = f"server:{url}"
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_series = max_series
        self._interval = interval
        self._monotonic = monotonic
        self._fetcher: Fetcher | None = None
        self._fetch = fetch or self._fetch_with_deadline
        self._bindings: dict[str, list[_Binding]] = {}
        for model in models:
            server = model.server
            for quantity, spec in server.preset.metrics.items():
                self._bindings.setdefault(spec.metric, []).append(_Binding(
                    model.key, quantity, spec.scale, server.preset.model_label, server.model,
                    server.preset.version_label, server.version, spec.match))
        self._pattern = sample_pattern(self._bindings)
        self._last: dict[tuple[str, str], float] = {}
        self._baseline_taken = False
        self._failures = 0
        self._next_attempt = 0.0
        self.last_reading = ServerReading(ok=False, error="not fetched yet")

    def _fetch_with_deadline(self, url: str) -> str:
        if self._fetcher is None:
            self._fetcher = Fetcher(url, self._timeout, self._max_bytes)  # keeps the connection alive
        return self._fetcher.fetch()

    def same_bindings(self, other: ServerSource) -> bool:
        return self._bindings == other._bindings

    def adopt_state(self, previous: ServerSource) -> None:
        """Carry counter history across a config reload that kept this server unchanged."""
        self._last = previous._last
        self._baseline_taken = previous._baseline_taken
        self.last_reading = previous.last_reading

    def sample(self) -> ServerReading:
        now = self._monotonic()
        if now < self._next_attempt:
            reading = ServerReading(ok=False, error=self.last_reading.error or "backing off")
            return reading
        try:
            text = self._fetch(self.url)
        except FetchError as exc:
            return self._failed(now, str(exc))
        except Exception as exc:  # a fetch hook or decoder bug must not stop sampling
            return self._failed(now, f"{type(exc).__name__}: {exc}")
        self._failures = 0
        reading = self._ingest(text)
        self.last_reading = reading
        return reading

    def _failed(self, now: float, error: str) -> ServerReading:
        self._failures += 1
        backoff = min(self._interval * 2 ** (self._failures - 1), MAX_BACKOFF_SECONDS)
        self._next_attempt = now + backoff - self._interval  # the next regular tick after the backoff
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "cannot read %s: %s (failure %d)", self.url, error, self._failures)
        self.last_reading = ServerReading(ok=False, error=error)
        return self.last_reading

    def _ingest(self, text: str) -> ServerReading:
        reading = ServerReading(ok=True)
        current: dict[tuple[str, str], float] = {}
        first = not self._baseline_taken
        for name, label_block, raw_value in iter_samples(text, self._pattern):
            key = (name, label_block)
            if key in current:
                continue  # a duplicated series: keep the first, as Prometheus does
            try:
                value = float(raw_value)
            except ValueError:
                reading.invalid_samples += 1
                continue
            if math.isnan(value) or math.isinf(value) or value < 0:
                reading.invalid_samples += 1
                continue
            labels = parse_labels(label_block)
            if labels is None:
                reading.invalid_samples += 1
                continue
            bindings = [b for b in self._bindings[name] if b.accepts(labels)]
            if not bindings:
                continue
            if len(current) >= self._max_series:
                reading.dropped_series += 1
                continue
            current[key] = value
            previous = self._last.get(key)
            # A series first seen at startup is a baseline; one that appears later started from zero
            # since the last fetch (a new label value, or a restarted server). A drop is a counter reset.
            delta = (0.0 if first else value) if previous is None else (
                value - previous if value >= previous else value)
            if delta:
                for binding in bindings:
                    per_model = reading.deltas.setdefault(binding.model, {})
                    per_model[binding.quantity] = per_model.get(binding.quantity, 0.0) + delta * binding.scale
        self._last = current
        self._baseline_taken = True
        reading.series = len(current)
        if reading.dropped_series:
            log.warning("%s: %d series over the cap of %d were dropped", self.url, reading.dropped_series,
                        self._max_series)
        return reading

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
