"""The accrual ledger: turns measured intervals into accrued, attributed cost.

This is the one explicit, thread-safe object that holds state between scrapes
(accrued counters, the cost-per-1k window, budget spend). Collectors only read
snapshots of it. Every dollar of an interval is attributed to exactly one
model; idle cost is a part of that dollar, never added to it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from ml_cost_exporter.config.schema import Budget, Config, Model
from ml_cost_exporter.cost.periods import Period, period_at, split_by_period
from ml_cost_exporter.cost.pricing import CostRates

ModelKey = tuple[str, str]  # (model, version)
IDLE_RESOURCES = ("gpu", "cpu", "memory")
TOKEN_KINDS = ("prompt", "generation")
GIB = 1024.0**3
# Series of an ended budget period stay exported this long, so the last
# increments are scraped before the series goes away.
ENDED_PERIOD_RETENTION_SECONDS = 3600.0


@dataclass(frozen=True)
class Usage:
    """What was measured over one sampling interval [start, end), in Unix seconds."""

    start: float
    end: float
    gpu_utilization: float | None = None  # 0..1, mean over the pod's GPUs
    gpu_power_watts: float | None = None  # sum over the pod's GPUs
    cpu_used_cores: float | None = None
    memory_used_bytes: float | None = None
    requests: Mapping[ModelKey, float] = field(default_factory=dict)
    tokens: Mapping[tuple[ModelKey, str], float] = field(default_factory=dict)
    compute_seconds: Mapping[ModelKey, float] = field(default_factory=dict)


@dataclass(frozen=True)
class IntervalCost:
    """What one recorded interval cost each model, by resource, after attribution; never re-priced downstream."""

    start: float
    end: float
    by_model: Mapping[ModelKey, Mapping[str, float]]
    shares: Mapping[ModelKey, float]

    def model_total(self, key: ModelKey) -> float:
        return sum(self.by_model.get(key, {}).values())


@dataclass(frozen=True)
class LedgerSnapshot:
    usd_total: Mapping[tuple[str, str, str, str], float]  # (model, version, workload, resource)
    idle_usd_total: Mapping[tuple[str, str, str], float]  # (model, version, resource)
    hourly_usd: Mapping[tuple[str, str, str, str], float]
    requests_total: Mapping[ModelKey, float]
    tokens_total: Mapping[tuple[str, str, str], float]  # (model, version, kind)
    cost_per_1k_usd: Mapping[ModelKey, float]  # only models with requests in the window
    budget_spend_usd: Mapping[tuple[str, str], float]  # (budget, period label)
    budget_burn_rate: Mapping[str, float]
    budget_periods: Mapping[str, Period]


class CostLedger:
    def __init__(self, config: Config, rates: CostRates, now: float) -> None:
        self._lock = threading.Lock()
        self._usd: dict[tuple[str, str, str, str], float] = {}
        self._idle: dict[tuple[str, str, str], float] = {}
        self._requests: dict[ModelKey, float] = {}
        self._tokens: dict[tuple[str, str, str], float] = {}
        self._window: dict[ModelKey, deque[tuple[float, float, float]]] = {}
        self._budget_spend: dict[tuple[str, str], float] = {}
        self._budget_period_end: dict[tuple[str, str], float] = {}
        self._hourly: dict[tuple[str, str, str, str], float] = {}
        self._budget_rate_usd_per_hour: dict[str, float] = {}
        self.reconfigure(config, rates, now)

    def reconfigure(self, config: Config, rates: CostRates, now: float) -> None:
        """Adopt a new config: keep totals of models and budgets that remain, drop the rest."""
        with self._lock:
            self._config = config
            self._rates = rates
            models = {m.key for m in config.models}
            budgets = {b.name for b in config.budgets}
            for store in (self._usd, self._idle, self._tokens, self._hourly):
                for key in [k for k in store if (k[0], k[1]) not in models]:
                    del store[key]
            for store in (self._requests, self._window):
                for key in [k for k in store if k not in models]:
                    del store[key]
            for store in (self._budget_spend, self._budget_period_end):
                for key in [k for k in store if k[0] not in budgets]:
                    del store[key]
            for model in config.models:
                self._requests.setdefault(model.key, 0.0)
                self._window.setdefault(model.key, deque())
                for resource in rates.resources():
                    self._usd.setdefault((*model.key, model.workload, resource), 0.0)
                for resource in IDLE_RESOURCES:
                    self._idle.setdefault((*model.key, resource), 0.0)
            equal = 1.0 / len(config.models)
            power = rates.fallback_power_watts
            self._set_rates(self._resource_rates(power), {m.key: equal for m in config.models})
            for budget in config.budgets:
                period = period_at(budget.period, now)
                self._budget_spend.setdefault((budget.name, period.label), 0.0)
                self._budget_period_end[(budget.name, period.label)] = period.end

    def _resource_rates(self, power_watts: float | None) -> dict[str, float]:
        rates = self._rates.static_usd_per_hour()
        if self._rates.energy_usd_per_kwh > 0:
            watts = power_watts if power_watts is not None else self._rates.fallback_power_watts
            rates["energy"] = watts / 1000.0 * self._rates.energy_usd_per_kwh
        return rates

    def _set_rates(self, rates: dict[str, float], shares: dict[ModelKey, float]) -> None:
        self._budget_rate_usd_per_hour = {}
        for model in self._config.models:
            for resource, rate in rates.items():
                self._hourly[(*model.key, model.workload, resource)] = rate * shares[model.key]
        for budget in self._config.budgets:
            self._budget_rate_usd_per_hour[budget.name] = sum(
                rate * shares[m.key] for m in self._config.models if budget.selector.matches(m)
                for rate in rates.values())

    def _shares(self, usage: Usage) -> dict[ModelKey, float]:
        """Each model's share of the interval's cost: compute time, else requests, else equal."""
        models = self._config.models
        weights = None
        if self._config.attribution == "compute_time":
            weights = {m.key: max(usage.compute_seconds.get(m.key, 0.0), 0.0) for m in models}
            if sum(weights.values()) <= 0:
                weights = None
        if weights is None:
            weights = {m.key: max(usage.requests.get(m.key, 0.0), 0.0) for m in models}
        total = sum(weights.values())
        if total <= 0:
            return {m.key: 1.0 / len(models) for m in models}
        return {key: weight / total for key, weight in weights.items()}

    def _idle_fractions(self, usage: Usage) -> dict[str, float]:
        allocation = self._rates.allocation
        idle = {}
        if usage.gpu_utilization is not None and allocation.gpus > 0:
            idle["gpu"] = 1.0 - min(max(usage.gpu_utilization, 0.0), 1.0)
        if usage.cpu_used_cores is not None and allocation.vcpus > 0:
            idle["cpu"] = 1.0 - min(max(usage.cpu_used_cores / allocation.vcpus, 0.0), 1.0)
        if usage.memory_used_bytes is not None and allocation.memory_gib > 0:
            idle["memory"] = 1.0 - min(max(usage.memory_used_bytes / (allocation.memory_gib * GIB), 0.0), 1.0)
        return idle

    def record(self, usage: Usage) -> IntervalCost:
        """Accrue the cost of one measured interval; returns what each model was charged for it."""
        seconds = usage.end - usage.start
        if seconds <= 0:
            return IntervalCost(usage.start, usage.end, {}, {})
        by_model: dict[ModelKey, dict[str, float]] = {}
        with self._lock:
            hours = seconds / 3600.0
            rates = self._resource_rates(usage.gpu_power_watts)
            shares = self._shares(usage)
            idle = self._idle_fractions(usage)
            for model in self._config.models:
                share = shares[model.key]
                model_cost = 0.0
                for resource, rate in rates.items():
                    cost = rate * hours * share
                    model_cost += cost
                    by_model.setdefault(model.key, {})[resource] = cost
                    self._usd[(*model.key, model.workload, resource)] += cost
                    if resource in idle:
                        self._idle[(*model.key, resource)] += cost * idle[resource]
                requests = max(usage.requests.get(model.key, 0.0), 0.0)
                self._requests[model.key] += requests
                for kind in TOKEN_KINDS:
                    tokens = usage.tokens.get((model.key, kind), 0.0)
                    if tokens > 0:
                        key = (*model.key, kind)
                        self._tokens[key] = self._tokens.get(key, 0.0) + tokens
                self._window[model.key].append((usage.end, model_cost, requests))
                self._record_budgets(model, model_cost, usage)
            self._set_rates(rates, shares)
            self._prune(usage.end)
        return IntervalCost(usage.start, usage.end, by_model, shares)

    def _record_budgets(self, model: Model, cost: float, usage: Usage) -> None:
        seconds = usage.end - usage.start
        for budget in self._matching_budgets(model):
            for period, part in split_by_period(budget.period, usage.start, usage.end):
                key = (budget.name, period.label)
                self._budget_spend[key] = self._budget_spend.get(key, 0.0) + cost * part / seconds
                self._budget_period_end[key] = period.end

    def _matching_budgets(self, model: Model) -> list[Budget]:
        return [b for b in self._config.budgets if b.selector.matches(model)]

    def _prune(self, now: float) -> None:
        horizon = now - self._config.collection.cost_window_seconds
        for window in self._window.values():
            while window and window[0][0] <= horizon:
                window.popleft()
        expired = [k for k, end in self._budget_period_end.items() if end <= now - ENDED_PERIOD_RETENTION_SECONDS]
        for key in expired:
            del self._budget_period_end[key]
            del self._budget_spend[key]

    def snapshot(self, now: float) -> LedgerSnapshot:
        with self._lock:
            self._prune(now)
            per_1k = {}
            for key, window in self._window.items():
                requests = sum(entry[2] for entry in window)
                if requests > 0:
                    per_1k[key] = sum(entry[1] for entry in window) / requests * 1000.0
            periods = {b.name: period_at(b.period, now) for b in self._config.budgets}
            spend = dict(self._budget_spend)
            for name, period in periods.items():
                spend.setdefault((name, period.label), 0.0)
            burn = {}
            for budget in self._config.budgets:
                affordable_per_hour = budget.amount_usd / (periods[budget.name].length_seconds / 3600.0)
                burn[budget.name] = self._budget_rate_usd_per_hour.get(budget.name, 0.0) / affordable_per_hour
            return LedgerSnapshot(
                usd_total=dict(self._usd),
                idle_usd_total=dict(self._idle),
                hourly_usd=dict(self._hourly),
                requests_total=dict(self._requests),
                tokens_total=dict(self._tokens),
                cost_per_1k_usd=per_1k,
                budget_spend_usd=spend,
                budget_burn_rate=burn,
                budget_periods=periods,
            )
