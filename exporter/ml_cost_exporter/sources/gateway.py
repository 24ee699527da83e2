"""A multi-tenant gateway's per-tenant token counters (LiteLLM, Envoy AI Gateway), as per-interval deltas.

Read through the same fetch seam as the inference servers, with the same
defences: a capped body, malformed or negative values counted and skipped, a
cap on the series tracked (a tenant explosion cannot grow memory without
bound), counter resets handled as `rate()` does, and backoff while it is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ml_cost_exporter.config.tokens import Gateway
from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.sources.expfmt import iter_samples, not_metrics, parse_labels, sample_pattern
from ml_cost_exporter.sources.fetch import Backoff, FetchError, KeptAliveFetch
from ml_cost_exporter.sources.hosted import HostedSpend
from ml_cost_exporter.sources.plausible import (
    DEFAULT_PLAUSIBILITY,
    Plausibility,
    RejectionLog,
    counter_value,
    refuse_implausible,
)
from ml_cost_exporter.sources.replicas import ReplicaReader, Resolver

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
    rejected: dict[str, int] = field(default_factory=dict)  # refused samples and increases, by reason
    hosted_usd: dict[str, float] = field(default_factory=dict)  # API spend by hosted model (hosted_spend)


class GatewaySource:
    """One gateway (all its replicas); its model label values are mapped onto configured models."""

    def __init__(self, gateway: Gateway, timeout: float, max_bytes: int, max_series: int, interval: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 fetch: Callable[[str], str] | None = None, resolve: Resolver | None = None,
                 plausibility: Plausibility = DEFAULT_PLAUSIBILITY) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.name = f"gateway:{gateway.url}"
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_series = max_series
        self._monotonic = monotonic
        self._fetcher = KeptAliveFetch(self._timeout, self._max_bytes, gateway.http)
        self._replicas = ReplicaReader(gateway.urls or (gateway.url,), gateway.replicas == "dns", self._fetcher,
                                       timeout, monotonic, fetch=fetch, resolve=resolve)
        self._kinds: dict[str, list[tuple[str, float, tuple]]] = {}
        for kind, spec in gateway.preset.metrics.items():
            self._kinds.setdefault(spec.metric, []).append((kind, spec.scale, spec.match))
        self._pattern = sample_pattern(self._kinds)
        self._last: dict[tuple[str, str, str], float] = {}  # (replica, name, labels)
        self._baseline_taken = False
        self._limits = plausibility
        self._last_read_at: float | None = None
        self._rejections = RejectionLog(self.name, monotonic)
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
            self._last_read_at = previous._last_read_at
            self.last_reading = previous.last_reading
            if self.hosted is not None and previous.hosted is not None:
                self.hosted.adopt(previous.hosted)

    def sample(self) -> GatewayReading:
        now = self._monotonic()
        if self._backoff.waiting(now):
            return GatewayReading(ok=False, error=self.last_reading.error or "backing off")
        try:
            texts = self._replicas.read()
        except FetchError as exc:
            self._backoff.failed(now, str(exc))
            self.last_reading = GatewayReading(ok=False, error=str(exc))
            return self.last_reading
        unusable = next((f"{replica}: {why}" for replica, text in texts if (why := not_metrics(text))), None)
        if unusable is not None:
            self._backoff.failed(now, unusable)
            self.last_reading = GatewayReading(ok=False, error=unusable)
            return self.last_reading
        self._backoff.succeeded()
        self.last_reading = self._ingest(texts, now)
        if self.hosted is not None:
            self.last_reading.hosted_usd = self.hosted.deltas(texts)
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

    def _ingest(self, texts: list[tuple[str, str]], now: float) -> GatewayReading:
        """Token deltas of every replica's text, each series counted against its own replica's last value."""
        reading = GatewayReading(ok=True)
        current: dict[tuple[str, str, str], float] = {}
        first = not self._baseline_taken
        elapsed = None if first or self._last_read_at is None else now - self._last_read_at
        samples = ((replica, *sample) for replica, text in texts for sample in iter_samples(text, self._pattern))
        for replica, name, label_block, raw_value in samples:
            key = (replica, name, label_block)
            if key in current:
                continue
            if len(current) >= self._max_series:  # full: the rest is counted, not parsed (bounded time)
                reading.dropped_series += 1
                continue
            value, reason = counter_value(raw_value, self._limits)
            labels = parse_labels(label_block) if value is not None else None
            if labels is None:
                reading.rejected[reason or "malformed"] = reading.rejected.get(reason or "malformed", 0) + 1
                reading.invalid_samples += reason != "too_large"
                continue
            counted = self._classify(name, labels)
            if not counted:
                continue
            previous = self._last.get(key)
            delta = (0.0 if first else value) if previous is None else (
                value - previous if value >= previous else value)
            if delta and elapsed is not None and any(
                    delta * scale > self._limits.bound(kind, elapsed) for _m, _t, kind, scale in counted):
                reading.rejected["implausible_increase"] = reading.rejected.get("implausible_increase", 0) + 1
                current[key] = previous if previous is not None else value  # the leap is ignored
                continue
            current[key] = value
            if delta:
                for model, tenant, kind, scale in counted:
                    slot = (model, tenant, kind)
                    reading.tokens[slot] = reading.tokens.get(slot, 0.0) + delta * scale
        reading.series = len(current)
        self._last = self._remembered(current, {replica for replica, _ in texts})
        self._baseline_taken = True
        self._last_read_at = now
        self._refuse_implausible(reading, elapsed)
        if reading.rejected:
            self._rejections.add(reading.rejected)
        if reading.dropped_series:
            log.warning("%s: %d series over the cap of %d were dropped", self.url, reading.dropped_series,
                        self._max_series)
        return reading

    def _refuse_implausible(self, reading: GatewayReading, elapsed: float | None) -> None:
        """A model's tokens of one kind, summed over tenants, past what the interval allows: all refused."""
        sums: dict[tuple[ModelKey, str], float] = {}
        for (model, _tenant, kind), value in reading.tokens.items():
            sums[(model, kind)] = sums.get((model, kind), 0.0) + value
        kept = dict(sums)
        refused = refuse_implausible(kept, elapsed, self._limits, quantity_of=lambda slot: slot[1])
        if refused:
            reading.rejected["implausible_increase"] = reading.rejected.get("implausible_increase", 0) + refused
            reading.tokens = {slot: v for slot, v in reading.tokens.items() if (slot[0], slot[2]) in kept}

    def _remembered(self, current: dict[tuple[str, str, str], float],
                    read: set[str]) -> dict[tuple[str, str, str], float]:
        """This read's values, plus the last ones of replicas absent from it (a pod briefly out of DNS)."""
        remembered = dict(current)
        for key, value in self._last.items():
            if len(remembered) >= self._max_series:
                break
            if key[0] not in read:
                remembered.setdefault(key, value)
        return remembered

    def close(self) -> None:
        self._fetcher.close()
