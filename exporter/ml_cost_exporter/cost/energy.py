"""Measured GPU energy, attributed to models like their cost, and the carbon it stands for.

Energy is shared between models by the same per-interval shares as cost (the
ledger's IntervalCost), so a model's joules and dollars come from one
attribution. Carbon = energy x PUE x the grid's intensity. A model has energy
series only once energy has been measured; intervals whose energy is unknown
add nothing and do not enter the per-1k windows, which would otherwise read low.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ml_cost_exporter.config.schema import Energy
from ml_cost_exporter.cost.ledger import IntervalCost, ModelKey

JOULES_PER_KWH = 3.6e6
STATE_VERSION = 1


@dataclass(frozen=True)
class EnergySnapshot:
    joules_total: Mapping[ModelKey, float]
    carbon_grams_total: Mapping[ModelKey, float]
    joules_per_1k_requests: Mapping[ModelKey, float]  # only models with requests in the window
    joules_per_epoch: Mapping[ModelKey, float]  # only models with progress in the window


class EnergyAccount:
    def __init__(self, models: Iterable[ModelKey], energy: Energy, window_seconds: float) -> None:
        self._lock = threading.Lock()
        self._joules: dict[ModelKey, float] = {}
        self._grams: dict[ModelKey, float] = {}
        self._window: dict[ModelKey, deque[tuple[float, float, float, float]]] = {}
        self.reconfigure(models, energy, window_seconds)

    def reconfigure(self, models: Iterable[ModelKey], energy: Energy, window_seconds: float) -> None:
        """Keep totals of models that remain; drop the rest."""
        keys = set(models)
        with self._lock:
            self._energy = energy
            self._window_seconds = window_seconds
            for store in (self._joules, self._grams, self._window):
                for key in [k for k in store if k not in keys]:
                    del store[key]
            self._models = keys

    def record(self, interval: IntervalCost, joules: float | None, requests: Mapping[ModelKey, float],
               epochs: Mapping[ModelKey, float]) -> None:
        """Attribute one interval's measured energy (None: not measured) by the interval's cost shares."""
        if joules is None or not math.isfinite(joules) or joules < 0:
            return
        intensity, pue = self._energy.carbon_intensity_g_per_kwh, self._energy.pue
        with self._lock:
            for key, share in interval.shares.items():
                if key not in self._models:
                    continue
                part = joules * share
                self._joules[key] = self._joules.get(key, 0.0) + part
                if intensity is not None:
                    self._grams[key] = self._grams.get(key, 0.0) + part / JOULES_PER_KWH * pue * intensity
                window = self._window.setdefault(key, deque())
                window.append((interval.end, part, max(requests.get(key, 0.0), 0.0), max(epochs.get(key, 0.0), 0.0)))
            self._prune(interval.end)

    def _prune(self, now: float) -> None:
        horizon = now - self._window_seconds
        for window in self._window.values():
            while window and window[0][0] <= horizon:
                window.popleft()

    def snapshot(self, now: float) -> EnergySnapshot:
        with self._lock:
            self._prune(now)
            per_1k, per_epoch = {}, {}
            for key, window in self._window.items():
                joules = sum(entry[1] for entry in window)
                requests = sum(entry[2] for entry in window)
                epochs = sum(entry[3] for entry in window)
                if requests > 0:
                    per_1k[key] = joules / requests * 1000.0
                if epochs > 0:
                    per_epoch[key] = joules / epochs
            return EnergySnapshot(dict(self._joules), dict(self._grams), per_1k, per_epoch)

    def export_state(self) -> dict:
        with self._lock:
            return {"version": STATE_VERSION,
                    "models": [{"model": k[0], "version": k[1], "joules": self._joules.get(k, 0.0),
                                "grams": self._grams.get(k)} for k in sorted(self._joules)]}

    def restore_state(self, state: dict) -> None:
        """Totals from a checkpoint; anything malformed raises ValueError and nothing is changed."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"energy state: expected version {STATE_VERSION}")
        joules, grams = {}, {}
        for entry in state.get("models", []):
            key = (entry.get("model"), entry.get("version"))
            if not all(isinstance(part, str) for part in key):
                raise ValueError("energy state: model and version must be strings")
            joules[key] = _finite_non_negative(entry.get("joules"), "joules")
            if entry.get("grams") is not None:
                grams[key] = _finite_non_negative(entry.get("grams"), "grams")
        with self._lock:
            self._joules = {k: v for k, v in joules.items() if k in self._models}
            self._grams = {k: v for k, v in grams.items() if k in self._models}


def _finite_non_negative(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"energy state: {what} must be a finite number >= 0, got {value!r}")
    return float(value)
