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

from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.cost.ledger import IntervalCost

STATE_VERSION = 1


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

    def keep(self, models: set[ModelKey]) -> None:
        """Adopt a new config: totals of models that remain are kept, the rest dropped."""
        with self._lock:
            self._totals = {k: v for k, v in self._totals.items() if k in models}
            self._per_request = {k: v for k, v in self._per_request.items() if k in models}

    # --- checkpoint (section "cache") ---------------------------------------------
    def export_state(self) -> dict:
        with self._lock:
            return {"version": STATE_VERSION,
                    "savings": [[*key, value] for key, value in sorted(self._totals.items())],
                    "per_request": [[*key, value] for key, value in sorted(self._per_request.items())]}

    def restore_state(self, state: dict) -> None:
        """Continue from a checkpoint's section; ValueError, changing nothing, on anything but counts."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("cache: unknown state version")
        totals, per_request = _rows(state.get("savings")), _rows(state.get("per_request"))
        with self._lock:
            self._totals, self._per_request = totals, per_request


def _rows(rows: object) -> dict[ModelKey, float]:
    if not isinstance(rows, list):
        raise ValueError("cache: expected a list of [model, version, value] rows")
    out = {}
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and all(isinstance(x, str) for x in row[:2])
                and _counted(row[2])):
            raise ValueError("cache: a row is not [model, version, a finite non-negative number]")
        out[(row[0], row[1])] = float(row[2])
    return out
