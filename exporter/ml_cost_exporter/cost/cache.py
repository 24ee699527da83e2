"""Response-cache savings: the dollars that requests answered from a cache would have cost.

A counterfactual, like the prefix-cache savings in cost/tokens.py: never part of any
cost. Over one interval, a model's measured cost per request is what the ledger
charged it (IntervalCost) over the requests that did model work, that is successful
requests less cache hits (a service instrumented with @track_cost counts its hits
among its requests). The hits saved that much each. An interval in which every
request was a hit has no cost per request of its own: the model's last one is used.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ml_cost_exporter.cost.ledger import IntervalCost, ModelKey


def _counted(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def cost_per_work_request(cost_usd: float, requests: float, cache_hits: float) -> float | None:
    """Dollars per request that did model work; None when no request did, or an input is not a count."""
    if not (_counted(cost_usd) and _counted(requests) and _counted(cache_hits)):
        return None
    work = requests - min(cache_hits, requests)
    return cost_usd / work if work > 0 else None


def cache_savings_usd(cost_usd: float, requests: float, cache_hits: float,
                      last_cost_per_request: float | None = None) -> float:
    """Dollars the interval's cache hits saved: hits times this interval's (or the last) cost per work request.

    Hits are among the requests, so no more hits than requests are counted.
    """
    if not (_counted(requests) and _counted(cache_hits)):
        return 0.0
    per_request = cost_per_work_request(cost_usd, requests, cache_hits)
    if per_request is None:
        per_request = last_cost_per_request
    if per_request is None or not _counted(per_request):
        return 0.0
    return min(cache_hits, requests) * per_request


@dataclass(frozen=True)
class CacheSavingsSnapshot:
    savings_usd_total: Mapping[ModelKey, float]  # (model, version) -> USD, monotonic
    cost_per_request_usd: Mapping[ModelKey, float]  # the last measured, carried to all-hit intervals
    refused: Mapping[str, int]  # inputs set aside, by reason


class CacheSavings:
    """Each model's accumulated cache savings; thread-safe, totals never decrease."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[ModelKey, float] = {}
        self._per_request: dict[ModelKey, float] = {}
        self._refused: dict[str, int] = {}

    def add(self, interval: IntervalCost, requests: Mapping[ModelKey, float],
            cache_hits: Mapping[ModelKey, float]) -> None:
        """Accrue one interval: its attributed cost, and each model's successful requests and hits (deltas)."""
        with self._lock:
            for key in set(requests) | set(cache_hits):
                self._add_model(key, interval.model_total(key), requests.get(key, 0.0), cache_hits.get(key, 0.0))

    def _add_model(self, key: ModelKey, cost: float, requests: float, hits: float) -> None:
        if not (_counted(cost) and _counted(requests) and _counted(hits)):
            self._refuse("not_a_count")
            return
        if hits > requests:
            self._refuse("hits_above_requests")  # counted, but only as many as the requests
        per_request = cost_per_work_request(cost, requests, hits)
        if per_request is not None:
            self._per_request[key] = per_request
        saved = cache_savings_usd(cost, requests, hits, self._per_request.get(key))
        total = self._totals.get(key, 0.0) + saved
        if not math.isfinite(total):
            self._refuse("not_finite")
        elif saved > 0:
            self._totals[key] = total

    def _refuse(self, reason: str) -> None:
        self._refused[reason] = self._refused.get(reason, 0) + 1

    def snapshot(self) -> CacheSavingsSnapshot:
        with self._lock:
            return CacheSavingsSnapshot(dict(self._totals), dict(self._per_request), dict(self._refused))

    def restore(self, snapshot: CacheSavingsSnapshot) -> None:
        """Continue from saved totals (a checkpoint); values that are not counts are left out."""
        with self._lock:
            self._totals = {k: v for k, v in snapshot.savings_usd_total.items() if _counted(v)}
            self._per_request = {k: v for k, v in snapshot.cost_per_request_usd.items() if _counted(v)}
