"""A training job's progress against its cost: cost per epoch and per 1M samples, progress, cost at completion.

The job reports its progress through counters on its /metrics (samples, steps,
epochs, which may grow by fractions of an epoch); the ledger says what each
interval cost the model. Rates are taken over the rolling cost window, like
cost per 1k, and are absent while the job made no progress in it: a stalled job
keeps accruing cost but claims no cost per epoch. Progress is the job's own
counter value over the expected total (the config's, else the job's gauge), so a
job that resumes from a checkpoint with its counters restored continues where it
was; one that restarts them at zero starts its progress again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ml_cost_exporter.config.presets import Quantity as Q
from ml_cost_exporter.config.schema import Model
from ml_cost_exporter.cost.ledger import IntervalCost, ModelKey

PROGRESS = (Q.SAMPLES, Q.STEPS, Q.EPOCHS, Q.TRAINING_TOKENS)


@dataclass(frozen=True)
class TrainingSnapshot:
    progress_total: Mapping[tuple[str, str, str], float]  # (model, version, unit) -> units seen while watched
    cost_per_epoch_usd: Mapping[ModelKey, float]
    cost_per_1m_samples_usd: Mapping[ModelKey, float]
    progress_ratio: Mapping[ModelKey, float]
    projected_cost_usd: Mapping[ModelKey, float]


class TrainingAccount:
    def __init__(self, models: Iterable[Model], window_seconds: float) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str, str], float] = {}
        self._window: dict[ModelKey, deque[tuple[float, float, float, float]]] = {}
        self._current: dict[ModelKey, dict[str, float]] = {}
        self.reconfigure(models, window_seconds)

    def reconfigure(self, models: Iterable[Model], window_seconds: float) -> None:
        with self._lock:
            self._models = {m.key: m for m in models}
            self._window_seconds = window_seconds
            for key in [k for k in self._totals if (k[0], k[1]) not in self._models]:
                del self._totals[key]
            for store in (self._window, self._current):
                for key in [k for k in store if k not in self._models]:
                    del store[key]

    def record(self, interval: IntervalCost, deltas: Mapping[ModelKey, Mapping[str, float]],
               values: Mapping[ModelKey, Mapping[str, float]]) -> None:
        """One interval: its cost per model, the progress made in it, and the job's current counter values."""
        with self._lock:
            for key in self._models:
                progress = deltas.get(key, {})
                if not any(q in progress for q in PROGRESS) and key not in self._window and key not in values:
                    continue  # not a training job
                for unit in PROGRESS:
                    if progress.get(unit, 0.0) > 0:
                        total_key = (*key, unit)
                        self._totals[total_key] = self._totals.get(total_key, 0.0) + progress[unit]
                self._window.setdefault(key, deque()).append(
                    (interval.end, interval.model_total(key), max(progress.get(Q.EPOCHS, 0.0), 0.0),
                     max(progress.get("samples", 0.0), 0.0)))
                if key in values:
                    self._current[key] = dict(values[key])
            horizon = interval.end - self._window_seconds
            for window in self._window.values():
                while window and window[0][0] <= horizon:
                    window.popleft()

    def snapshot(self, job_cost_usd: Mapping[ModelKey, float]) -> TrainingSnapshot:
        """`job_cost_usd`: what each model has cost so far (the ledger's totals), for the projection."""
        with self._lock:
            per_epoch, per_1m, ratio, projected = {}, {}, {}, {}
            for key, window in self._window.items():
                cost = sum(e[1] for e in window)
                epochs = sum(e[2] for e in window)
                samples = sum(e[3] for e in window)
                if epochs > 0:
                    per_epoch[key] = cost / epochs
                if samples > 0:
                    per_1m[key] = cost / samples * 1e6
                done, expected, unit_cost = self._progress(key, per_epoch.get(key), per_1m.get(key))
                if done is None:
                    continue
                ratio[key] = done / expected
                if unit_cost is not None:
                    projected[key] = job_cost_usd.get(key, 0.0) + max(expected - done, 0.0) * unit_cost
            return TrainingSnapshot(dict(self._totals), per_epoch, per_1m, ratio, projected)

    def _progress(self, key: ModelKey, per_epoch: float | None,
                  per_1m_samples: float | None) -> tuple[float | None, float, float | None]:
        """(units done, units expected, cost per unit) in epochs where known, else in samples."""
        model, current = self._models[key], self._current.get(key, {})
        expected_epochs = model.expected_epochs or current.get("expected_epochs")
        if expected_epochs and Q.EPOCHS in current:
            return current[Q.EPOCHS], expected_epochs, per_epoch
        expected_samples = model.expected_samples or current.get("expected_samples")
        if expected_samples and "samples" in current:
            return current["samples"], expected_samples, None if per_1m_samples is None else per_1m_samples / 1e6
        return None, 0.0, None

    def export_state(self) -> dict:
        with self._lock:
            return {"version": 1, "totals": [[*k, v] for k, v in sorted(self._totals.items())]}

    def restore_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1 or not isinstance(state.get("totals"), list):
            raise ValueError("training state: expected version 1 with a list of totals")
        totals = {}
        for entry in state["totals"]:
            if (not isinstance(entry, list) or len(entry) != 4 or not all(isinstance(p, str) for p in entry[:3])
                    or entry[2] not in PROGRESS or isinstance(entry[3], bool)
                    or not isinstance(entry[3], int | float) or not 0 <= entry[3] < float("inf")):
                raise ValueError(f"training state: malformed total {entry!r}")
            totals[tuple(entry[:3])] = float(entry[3])
        with self._lock:
            self._totals = {k: v for k, v in totals.items() if (k[0], k[1]) in self._models}
