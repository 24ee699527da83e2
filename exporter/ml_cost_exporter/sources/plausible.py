"""Plausibility at the counter boundary: what a peer reports is checked before it can reach the books.

A server or gateway that reports 1.797e308, a counter that leaps or that drops
and climbs again to inflate its increases, or series that churn through label
values: each sample or increase that no real server could produce is refused,
counted by reason (mlcost_exporter_samples_rejected_total) and logged at most
once a minute per source and reason. What is refused never becomes money.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType

log = logging.getLogger(__name__)
REASONS = ("malformed", "non_finite", "negative", "too_large", "implausible_increase")
LOG_EVERY_SECONDS = 60.0


# The largest increase per second of each quantity, for one model on one pod: far above what any pod serves
# (a pod of eight GPUs serves thousands of requests and around a million tokens a second at the very most).
DEFAULT_MAX_INCREASE_PER_SECOND = MappingProxyType({
    "requests": 1e5, "failed_requests": 1e5, "samples": 1e7, "steps": 1e4, "epochs": 1e3,
    "prompt_tokens": 1e8, "generation_tokens": 1e8, "cached_prompt_tokens": 1e8, "training_tokens": 1e8,
    "cache_hits": 1e5, "compute_seconds": 1e4, "prefill_seconds": 1e4, "decode_seconds": 1e4,
    "input": 1e8, "output": 1e8, "total": 1e8,  # a gateway's token kinds
})
FALLBACK_MAX_INCREASE_PER_SECOND = 1e8


@dataclass(frozen=True)
class Plausibility:
    """The bounds of a plausible counter: its largest value, and its largest increase per second by quantity."""

    max_value: float = 1e15
    max_increase_per_second: Mapping[str, float] = field(default_factory=lambda: DEFAULT_MAX_INCREASE_PER_SECOND)

    def bound(self, quantity: str, elapsed_seconds: float) -> float:
        rate = self.max_increase_per_second.get(quantity, FALLBACK_MAX_INCREASE_PER_SECOND)
        return rate * max(elapsed_seconds, 1.0)


DEFAULT_PLAUSIBILITY = Plausibility()


def plausibility_of(max_counter_value: float, overrides: Mapping[str, float]) -> Plausibility:
    """The configured bounds: the defaults with the config's per-quantity overrides."""
    return Plausibility(max_counter_value, MappingProxyType({**DEFAULT_MAX_INCREASE_PER_SECOND, **overrides}))


def counter_value(raw: str, limits: Plausibility) -> tuple[float | None, str | None]:
    """A counter sample's value, or None and the reason it is refused."""
    try:
        value = float(raw)
    except ValueError:
        return None, "malformed"
    if math.isnan(value) or math.isinf(value):
        return None, "non_finite"
    if value < 0:
        return None, "negative"
    if value > limits.max_value:
        return None, "too_large"
    return value, None


def refuse_implausible(increases: MutableMapping, elapsed_seconds: float | None, limits: Plausibility,
                       quantity_of: Callable[[object], str]) -> int:
    """Drop every increase larger than the interval allows for its quantity; returns how many were dropped.

    `elapsed_seconds` is the time since the previous read (None on the first, which counts nothing).
    """
    if elapsed_seconds is None:
        return 0
    refused = [slot for slot, amount in increases.items()
               if not math.isfinite(amount) or abs(amount) > limits.bound(quantity_of(slot), elapsed_seconds)]
    for slot in refused:
        del increases[slot]
    return len(refused)


class RejectionLog:
    """One log line per source and reason at most once a minute: an attack cannot flood the log."""

    def __init__(self, source: str, monotonic: Callable[[], float]) -> None:
        self._source = source
        self._monotonic = monotonic
        self._logged_at: dict[str, float] = {}

    def add(self, counts: Mapping[str, int]) -> None:
        now = self._monotonic()
        for reason, count in counts.items():
            last = self._logged_at.get(reason)
            if last is None or now - last >= LOG_EVERY_SECONDS:
                self._logged_at[reason] = now
                log.warning("%s: refused %d sample(s) as %s (counted in mlcost_exporter_samples_rejected_total)",
                            self._source, count, reason.replace("_", " "))
