"""A multi-tenant gateway's per-tenant token counters (LiteLLM, Envoy AI Gateway), as per-interval deltas.

Read through the same fetch seam as the inference servers, with the same
defences: a capped body, malformed or negative values counted and skipped, a
cap on the series tracked (a tenant explosion cannot grow memory without
bound), counter resets handled as `rate()` does, and backoff while it is down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ml_cost_exporter.config.tokens import Gateway
from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern
from ml_cost_exporter.sources.fetch import Backoff, FetchError, KeptAliveFetch, fetch_text
from ml_cost_exporter.sources.hosted import HostedSpend

log = logging.getLogger(__name__)


@dataclass
class GatewayReading:
    """One fetch of one gateway: token deltas by (model, raw tenant label value, kind)."""

    ok: bool
    tokens: dict[tuple[ModelKey, str, str], float] = field(default_factory=dict)
    error: str | None = None
    series: int = 0
    dropped_series: int = 0
    invalid_samples: int = 0
    hosted_usd: dict[str, float] = field(default_factory=dict)  # API spend by hosted model (hosted_spend)


class GatewaySource:
    """One gateway URL; its model label values are mapped onto configured models."""

    def __init__(self, gateway: Gateway, timeout: float, max_bytes: int, max_series: int, interval: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 fetch: Callable[[str], str] | None = None) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.name = f"gateway:{gateway.url}"
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_series = max_series
        self._monotonic = monotonic
        self._fetcher = KeptAliveFetch(self._timeout, self._max_bytes)
        self._fetch = fetch or self._fetcher
        self._kinds: dict[str, list[tuple[str, float, tuple]]] = {}
        for kind, spec in gateway.preset.metrics.items():
            self._kinds.setdefault(spec.metric, []).append((kind, spec.scale, spec.match))
        self._pattern = sample_pattern(self._kinds)
        self._last: dict[tuple[str, str], float] = {}
        self._baseline_taken = False
        self._backoff = Backoff(interval, f"gateway {gateway.url}")
        self.last_reading = GatewayReading(ok=False, error="not fetched yet")
        self.hosted = HostedSpend(gateway, max_series) if gateway.hosted_spend else None

    @property
    def covered(self) -> frozenset[ModelKey]:
        """The models whose cost this gateway's tenants share."""
        return frozenset(self.gateway.models.values())

    def adopt_state(self, previous: GatewaySource) -> None:
        """Carry counter history across a reload that kept this gateway unchanged."""
        if previous.gateway == self.gateway:
            self._last = previous._last
            self._baseline_taken = previous._baseline_taken
            self.last_reading = previous.last_reading
            if self.hosted is not None and previous.hosted is not None:
                self.hosted.adopt(previous.hosted)

    def sample(self) -> GatewayReading:
        now = self._monotonic()
        if self._backoff.waiting(now):
            return GatewayReading(ok=False, error=self.last_reading.error or "backing off")
        try:
            text = fetch_text(self._fetch, self.url)
        except FetchError as exc:
            self._backoff.failed(now, str(exc))
            self.last_reading = GatewayReading(ok=False, error=str(exc))
            return self.last_reading
        self._backoff.succeeded()
        self.last_reading = self._ingest(text)
        if self.hosted is not None:
            self.last_reading.hosted_usd = self.hosted.deltas(text)
            self.last_reading.invalid_samples += self.hosted.invalid_samples
        return self.last_reading

    def _classify(self, name: str, labels: dict[str, str]) -> list[tuple[ModelKey, str, str, float]]:
        """(model, tenant, kind, scale) for every kind this sample counts; empty for other models."""
        model = self.gateway.models.get(labels.get(self.gateway.model_label, ""))
        if model is None:
            return []
        tenant = labels.get(self.gateway.tenant_label, "")
        return [(model, tenant, kind, scale) for kind, scale, match in self._kinds[name]
                if all(pattern.fullmatch(labels.get(label, "")) for label, pattern in match)]

    def _ingest(self, text: str) -> GatewayReading:
        reading = GatewayReading(ok=True)
        current: dict[tuple[str, str], float] = {}
        first = not self._baseline_taken
        for name, label_block, raw_value in iter_samples(text, self._pattern):
            key = (name, label_block)
            if key in current:
                continue
            if len(current) >= self._max_series:  # full: the rest is counted, not parsed (bounded time)
                reading.dropped_series += 1
                continue
            try:
                value = float(raw_value)
            except ValueError:
                value = math.nan
            labels = parse_labels(label_block)
            if math.isnan(value) or math.isinf(value) or value < 0 or labels is None:
                reading.invalid_samples += 1
                continue
            counted = self._classify(name, labels)
            if not counted:
                continue
            current[key] = value
            previous = self._last.get(key)
            delta = (0.0 if first else value) if previous is None else (
                value - previous if value >= previous else value)
            if delta:
                for model, tenant, kind, scale in counted:
                    slot = (model, tenant, kind)
                    reading.tokens[slot] = reading.tokens.get(slot, 0.0) + delta * scale
        self._last = current
        self._baseline_taken = True
        reading.series = len(current)
        if reading.dropped_series:
            log.warning("%s: %d series over the cap of %d were dropped", self.url, reading.dropped_series,
                        self._max_series)
        return reading

    def close(self) -> None:
        self._fetcher.close()
