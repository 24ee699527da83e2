"""Token economics: each model's interval cost split into prefill and decode, and prefix-cache savings.

The ledger prices and attributes an interval once (IntervalCost); this splits a
model's share further and never re-prices, so a model's phases always sum to
what the ledger charged it. Cache savings are a counterfactual: dollars that
computing the cached prompt tokens would have cost, never part of any cost.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ml_cost_exporter.config.tokens import TokenWeights
from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.cost.ledger import IntervalCost

PHASES = ("prefill", "decode")
STATE_VERSION = 1


@dataclass(frozen=True)
class TokenSignals:
    """What the server reported for one model over one interval (deltas)."""

    prompt_tokens: float = 0.0  # all prompt tokens, including those served from the prefix cache
    generation_tokens: float = 0.0
    cached_prompt_tokens: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def computed_prompt_tokens(self) -> float:
        return max(self.prompt_tokens - self.cached_prompt_tokens, 0.0)


def prefill_share(signals: TokenSignals, weights: TokenWeights) -> float | None:
    """Prefill's share of the interval: by the server's phase timing, else by weighted computed tokens."""
    prefill, decode = max(signals.prefill_seconds, 0.0), max(signals.decode_seconds, 0.0)
    if prefill + decode > 0:
        return prefill / (prefill + decode)
    prompt = signals.computed_prompt_tokens * weights.prompt
    generation = max(signals.generation_tokens, 0.0) * weights.generation
    if prompt + generation > 0:
        return prompt / (prompt + generation)
    return None


@dataclass(frozen=True)
class TokenSnapshot:
    phase_usd_total: Mapping[tuple[str, str, str], float]  # (model, version, phase)
    cached_prompt_tokens_total: Mapping[ModelKey, float]
    cache_savings_usd_total: Mapping[ModelKey, float]
    phase_cost_per_1m_usd: Mapping[tuple[str, str, str], float]  # only phases with tokens in the window
    cost_per_1m_usd: Mapping[ModelKey, float]  # only models with tokens in the window
    cache_hit_ratio: Mapping[ModelKey, float]  # only models with prompt tokens in the window


@dataclass
class _WindowEntry:
    end: float
    usd: float
    prefill_usd: float
    decode_usd: float
    prompt: float
    generation: float
    cached: float


class TokenEconomics:
    """Thread-safe accumulator of phase cost and cache savings per model (checkpoint section "tokens")."""

    def __init__(self, models: Iterable[ModelKey], weights: TokenWeights, window_seconds: float) -> None:
        self._lock = threading.Lock()
        self._phase_usd: dict[tuple[str, str, str], float] = {}
        self._cached: dict[ModelKey, float] = {}
        self._savings: dict[ModelKey, float] = {}
        self._last_share: dict[ModelKey, float] = {}
        self._prompt_usd_per_token: dict[ModelKey, float] = {}
        self._windows: dict[ModelKey, deque[_WindowEntry]] = {}
        self.reconfigure(models, weights, window_seconds)

    def reconfigure(self, models: Iterable[ModelKey], weights: TokenWeights, window_seconds: float) -> None:
        """Adopt a new config: keep the totals of models that remain, drop the rest."""
        keep = set(models)
        with self._lock:
            self._weights = weights
            self._window_seconds = window_seconds
            self._phase_usd = {k: v for k, v in self._phase_usd.items() if (k[0], k[1]) in keep}
            for store in (self._cached, self._savings, self._last_share, self._prompt_usd_per_token, self._windows):
                for key in [k for k in store if k not in keep]:
                    del store[key]
            for key in keep:
                self._windows.setdefault(key, deque())

    def record(self, interval: IntervalCost,
               signals: Mapping[ModelKey, TokenSignals]) -> dict[ModelKey, dict[str, float]]:
        """Split each model's interval cost into phases; returns the phase dollars of this interval."""
        phases: dict[ModelKey, dict[str, float]] = {}
        with self._lock:
            for key, resources in interval.by_model.items():
                if key not in self._windows:
                    continue
                usd = sum(resources.values())
                signal = signals.get(key, TokenSignals())
                share = prefill_share(signal, self._weights)
                if share is None:
                    share = self._last_share.get(key)  # no activity: split as the model last ran
                else:
                    self._last_share[key] = share
                split = {"prefill": usd * share, "decode": usd * (1.0 - share)} if share is not None else {}
                for phase, value in split.items():
                    self._phase_usd[(*key, phase)] = self._phase_usd.get((*key, phase), 0.0) + value
                if split:
                    phases[key] = split
                self._record_cache(key, signal, split.get("prefill"))
                self._windows[key].append(_WindowEntry(
                    interval.end, usd, split.get("prefill", 0.0), split.get("decode", 0.0),
                    max(signal.prompt_tokens, 0.0), max(signal.generation_tokens, 0.0),
                    max(signal.cached_prompt_tokens, 0.0)))
            self._prune(interval.end)
        return phases

    def _record_cache(self, key: ModelKey, signal: TokenSignals, prefill_usd: float | None) -> None:
        cached = max(signal.cached_prompt_tokens, 0.0)
        if prefill_usd is not None and signal.computed_prompt_tokens > 0:
            self._prompt_usd_per_token[key] = prefill_usd / signal.computed_prompt_tokens
        if cached <= 0:
            return
        self._cached[key] = self._cached.get(key, 0.0) + cached
        rate = self._prompt_usd_per_token.get(key)
        if rate is not None:  # priced at what computing a prompt token costs now; unknown before the first
            self._savings[key] = self._savings.get(key, 0.0) + cached * rate

    def _prune(self, now: float) -> None:
        horizon = now - self._window_seconds
        for window in self._windows.values():
            while window and window[0].end <= horizon:
                window.popleft()

    def snapshot(self, now: float) -> TokenSnapshot:
        with self._lock:
            self._prune(now)
            per_phase, overall, hit_ratio = {}, {}, {}
            for key, window in self._windows.items():
                prompt = sum(e.prompt for e in window)
                generation = sum(e.generation for e in window)
                if prompt > 0:
                    per_phase[(*key, "prefill")] = sum(e.prefill_usd for e in window) / prompt * 1e6
                    hit_ratio[key] = min(sum(e.cached for e in window) / prompt, 1.0)
                if generation > 0:
                    per_phase[(*key, "decode")] = sum(e.decode_usd for e in window) / generation * 1e6
                if prompt + generation > 0:
                    overall[key] = sum(e.usd for e in window) / (prompt + generation) * 1e6
            return TokenSnapshot(dict(self._phase_usd), dict(self._cached), dict(self._savings), per_phase,
                                 overall, hit_ratio)

    # --- checkpoint (a section of the --storage.path checkpoint) -----------------
    def export_state(self) -> dict:
        """Accrued totals and the last phase split and prompt-token price, as plain JSON values."""
        with self._lock:
            return {
                "version": STATE_VERSION,
                "phase_usd": [[m, v, p, value] for (m, v, p), value in sorted(self._phase_usd.items())],
                "cached_prompt_tokens": [[m, v, value] for (m, v), value in sorted(self._cached.items())],
                "cache_savings_usd": [[m, v, value] for (m, v), value in sorted(self._savings.items())],
                "prefill_share": [[m, v, value] for (m, v), value in sorted(self._last_share.items())],
                "prompt_usd_per_token": [[m, v, value]
                                         for (m, v), value in sorted(self._prompt_usd_per_token.items())],
            }

    def restore_state(self, state: dict) -> None:
        """Adopt a checkpoint written by export_state; ValueError naming the field on anything malformed."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"tokens: expected a mapping with version {STATE_VERSION}")
        phase_usd = {(m, v, p): value for m, v, p, value in state_rows(state, "phase_usd", 3)}
        if any(p not in PHASES for _, _, p in phase_usd):
            raise ValueError(f"tokens.phase_usd: phase must be one of {', '.join(PHASES)}")
        cached = {(m, v): value for m, v, value in state_rows(state, "cached_prompt_tokens", 2)}
        savings = {(m, v): value for m, v, value in state_rows(state, "cache_savings_usd", 2)}
        shares = {(m, v): value for m, v, value in state_rows(state, "prefill_share", 2)}
        if any(value > 1 for value in shares.values()):
            raise ValueError("tokens.prefill_share: a share must be between 0 and 1")
        prices = {(m, v): value for m, v, value in state_rows(state, "prompt_usd_per_token", 2)}
        with self._lock:
            keep = set(self._windows)
            self._phase_usd = {k: x for k, x in phase_usd.items() if (k[0], k[1]) in keep}
            self._cached = {k: x for k, x in cached.items() if k in keep}
            self._savings = {k: x for k, x in savings.items() if k in keep}
            self._last_share = {k: x for k, x in shares.items() if k in keep}
            self._prompt_usd_per_token = {k: x for k, x in prices.items() if k in keep}


def state_rows(state: dict, name: str, labels: int, section: str = "tokens") -> list[tuple]:
    """Checkpoint rows of `labels` strings then one finite, non-negative number; ValueError naming the
    field otherwise."""
    rows = state.get(name, [])
    if not isinstance(rows, list):
        raise ValueError(f"{section}.{name}: expected a list")
    out = []
    for index, row in enumerate(rows):
        where = f"{section}.{name}[{index}]"
        if not isinstance(row, list) or len(row) != labels + 1:
            raise ValueError(f"{where}: expected {labels} labels and a value")
        if not all(isinstance(part, str) for part in row[:labels]):
            raise ValueError(f"{where}: labels must be strings")
        value = row[labels]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: value must be a finite, non-negative number")
        out.append((*row[:labels], float(value)))
    return out
