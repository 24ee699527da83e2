"""The inference server's own counters: fetched from its /metrics, turned into per-model deltas.

A broken or hostile server never takes the exporter down: the body is capped,
undecodable bytes are replaced, bad values are counted and skipped, and the
number of series tracked per source is capped with the excess counted.
Counter resets are handled as Prometheus `rate()` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ml_cost_exporter.config.presets import BASELINE_ON_RESET, GAUGE_QUANTITIES, LabelFilters
from ml_cost_exporter.config.schema import Model
from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.sources.expfmt import iter_samples, not_metrics, parse_labels, sample_pattern
from ml_cost_exporter.sources.fetch import Backoff, FetchError, KeptAliveFetch, fetch_text
from ml_cost_exporter.sources.plausible import (
    DEFAULT_PLAUSIBILITY,
    Plausibility,
    RejectionLog,
    counter_value,
    refuse_implausible,
)

log = logging.getLogger(__name__)



@dataclass
class ServerReading:
    """What one fetch of one server gave: per-model deltas since the last fetch."""

    ok: bool
    deltas: dict[ModelKey, dict[str, float]] = field(default_factory=dict)
    values: dict[ModelKey, dict[str, float]] = field(default_factory=dict)  # current values, summed over series
    error: str | None = None
    series: int = 0
    dropped_series: int = 0
    invalid_samples: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # refused samples and increases, by reason


@dataclass(frozen=True)
class _Binding:
    """One model's claim on one metric name of the server, with the sign it counts with."""

    model: ModelKey
    quantity: str
    factor: float  # the term's scale, negative for a subtracted term
    model_label: str | None  # None: the series names no model (one-model server, or a server-wide term)
    model_value: str
    version_label: str | None
    version_value: str | None
    match: LabelFilters
    exclude: LabelFilters = ()

    def accepts(self, labels: dict[str, str]) -> bool:
        if self.model_label is not None and labels.get(self.model_label) != self.model_value:
            return False
        if self.version_value is not None and labels.get(self.version_label) != self.version_value:
            return False
        if not all(pattern.fullmatch(labels.get(name, "")) for name, pattern in self.match):
            return False
        return not any(pattern.fullmatch(labels.get(name, "")) for name, pattern in self.exclude)


def _bindings_for(models: Sequence[Model], url: str) -> dict[str, list[_Binding]]:
    """Every model's terms by metric name; server-wide terms only where the URL serves one model."""
    bindings: dict[str, list[_Binding]] = {}
    skipped = set()
    for model in models:
        server = model.server
        for quantity, terms in server.preset.metrics.items():
            for term in terms:
                if term.server_wide and len(models) > 1:
                    skipped.add(term.metric)
                    continue
                per_model = not term.server_wide
                bindings.setdefault(term.metric, []).append(_Binding(
                    model.key, quantity, -term.scale if term.subtract else term.scale,
                    server.preset.model_label if per_model else None, server.model,
                    server.preset.version_label if per_model else None,
                    server.version if per_model else None, term.match, term.exclude))
    if skipped:
        log.warning("%s serves %d models; server-wide series %s cannot be split between them and are not read",
                    url, len(models), ", ".join(sorted(skipped)))
    return bindings


class ServerSource:
    """One inference server URL and the models served behind it."""

    def __init__(self, url: str, models: Sequence[Model], timeout: float, max_bytes: int, max_series: int,
                 interval: float, monotonic: Callable[[], float] = time.monotonic,
                 fetch: Callable[[str], str] | None = None, plausibility: Plausibility = DEFAULT_PLAUSIBILITY) -> None:
        self.url = url
        self.name = f"server:{url}"
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_series = max_series
        self._monotonic = monotonic
        # Models on one URL share its settings (the config checks that they agree).
        self._fetcher = KeptAliveFetch(timeout, max_bytes, next((m.server.http for m in models if m.server), None))
        self._fetch = fetch or self._fetcher
        self._bindings = _bindings_for(models, url)
        self._pattern = sample_pattern(self._bindings)
        self._last: dict[tuple[str, str], float] = {}
        # What subtracted terms took beyond what the adding terms gave, per (model, quantity): owed
        # by the next increases, so a difference of two counters never goes negative nor loses counts.
        self._owed: dict[tuple[ModelKey, str], float] = {}
        self._baseline_taken = False
        self._limits = plausibility
        self._last_read_at: float | None = None
        self._rejections = RejectionLog(self.name, monotonic)
        self._backoff = Backoff(interval, url)
        self.last_reading = ServerReading(ok=False, error="not fetched yet")

    def same_bindings(self, other: ServerSource) -> bool:
        return self._bindings == other._bindings

    def adopt_state(self, previous: ServerSource) -> None:
        """Carry counter history across a config reload that kept this server unchanged."""
        self._last = previous._last
        self._owed = previous._owed
        self._baseline_taken = previous._baseline_taken
        self._last_read_at = previous._last_read_at
        self.last_reading = previous.last_reading

    def sample(self) -> ServerReading:
        now = self._monotonic()
        if self._backoff.waiting(now):
            return ServerReading(ok=False, error=self.last_reading.error or "backing off")
        try:
            text = fetch_text(self._fetch, self.url)
        except FetchError as exc:
            self._backoff.failed(now, str(exc))
            self.last_reading = ServerReading(ok=False, error=str(exc))
            return self.last_reading
        unusable = not_metrics(text)
        if unusable is not None:
            self._backoff.failed(now, unusable)
            self.last_reading = ServerReading(ok=False, error=unusable)
            return self.last_reading
        self._backoff.succeeded()
        reading = self._ingest(text, now)
        self.last_reading = reading
        return reading

    def _ingest(self, text: str, now: float) -> ServerReading:
        reading = ServerReading(ok=True)
        current: dict[tuple[str, str], float] = {}
        first = not self._baseline_taken
        elapsed = None if first or self._last_read_at is None else now - self._last_read_at
        sums: dict[tuple[ModelKey, str], float] = {}
        for name, label_block, raw_value in iter_samples(text, self._pattern):
            key = (name, label_block)
            if key in current:
                continue  # a duplicated series: keep the first, as Prometheus does
            value, reason = counter_value(raw_value, self._limits)
            labels = parse_labels(label_block) if value is not None else None
            if labels is None:
                _refuse(reading, reason or "malformed")
                continue
            bindings = [b for b in self._bindings[name] if b.accepts(labels)]
            if not bindings:
                continue
            if len(current) >= self._max_series:
                reading.dropped_series += 1
                continue
            previous = self._last.get(key)
            delta = _increase(previous, value, first)
            if delta and self._implausible(delta, bindings, elapsed):
                # A leap no server makes: the sample is ignored, the series keeps its last believable value
                # (a new series starts from this one), so the next honest sample counts only what it adds.
                _refuse(reading, "implausible_increase")
                current[key] = previous if previous is not None else value
                continue
            current[key] = value
            restarted = previous is not None and value < previous
            for binding in bindings:
                values = reading.values.setdefault(binding.model, {})
                values[binding.quantity] = values.get(binding.quantity, 0.0) + value * binding.factor
                if not delta or binding.quantity in GAUGE_QUANTITIES or (
                        restarted and binding.quantity in BASELINE_ON_RESET):
                    continue  # a gauge has no increase; a restarted job's restored progress is not new work
                slot = (binding.model, binding.quantity)
                sums[slot] = sums.get(slot, 0.0) + delta * binding.factor
        self._last = self._remembered(current)
        self._baseline_taken = True
        self._last_read_at = now
        reading.series = len(current)
        # Many series each believable can still add up to more than the model could serve (label churn).
        _refuse(reading, "implausible_increase",
                refuse_implausible(sums, elapsed, self._limits, quantity_of=lambda slot: slot[1]))
        self._settle(sums, reading.deltas)
        if reading.dropped_series:
            log.warning("%s: %d series over the cap of %d were dropped", self.url, reading.dropped_series,
                        self._max_series)
        if reading.rejected:
            self._rejections.add(reading.rejected)
        return reading

    def _implausible(self, delta: float, bindings: list[_Binding], elapsed: float | None) -> bool:
        if elapsed is None:
            return False
        return any(delta * abs(b.factor) > self._limits.bound(b.quantity, elapsed)
                   for b in bindings if b.quantity not in GAUGE_QUANTITIES)

    def _remembered(self, current: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        """This fetch's values, plus the last value of series missing from it (up to the series cap).

        A series absent for a fetch (a garbled line, a scrape of a replica mid-restart) that comes
        back then counts only what it rose by, instead of its whole value as a new series would.
        """
        remembered = dict(current)
        for key, value in self._last.items():
            if len(remembered) >= self._max_series:
                break
            remembered.setdefault(key, value)
        return remembered

    def _settle(self, sums: dict[tuple[ModelKey, str], float], deltas: dict[ModelKey, dict[str, float]]) -> None:
        """Turn signed sums into non-negative deltas, carrying any shortfall to the next fetch."""
        for slot in set(sums) | set(self._owed):
            total = sums.get(slot, 0.0) + self._owed.pop(slot, 0.0)
            if total < 0:
                self._owed[slot] = total
            elif total > 0:
                model, quantity = slot
                deltas.setdefault(model, {})[quantity] = total

    def close(self) -> None:
        self._fetcher.close()


def _refuse(reading: ServerReading, reason: str, count: int = 1) -> None:
    """Count a refused sample; the kinds a counter cannot hold also count as invalid samples."""
    if count <= 0:
        return
    reading.rejected[reason] = reading.rejected.get(reason, 0) + count
    if reason != "implausible_increase" and reason != "too_large":
        reading.invalid_samples += count


def _increase(previous: float | None, value: float, first: bool) -> float:
    """How much a series rose since the last fetch, read as Prometheus `rate()` reads counters.

    A series first seen at startup is a baseline; one that appears later started from zero since
    the last fetch (a new label value, or a restarted server). A drop is a counter reset.
    """
    if previous is None:
        return 0.0 if first else value
    return value - previous if value >= previous else value
