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

from ml_cost_exporter.config.presets import Quantity as Q
from ml_cost_exporter.config.schema import Budget, Config, Model
from ml_cost_exporter.config.units import GIB, ModelKey
from ml_cost_exporter.cost.ledger_state import TOKEN_KINDS, LedgerState, decode, encode
from ml_cost_exporter.cost.periods import Period, period_at, split_by_period
from ml_cost_exporter.cost.pricing import CostRates

IDLE_RESOURCES = ("gpu", "cpu", "memory")
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
    requests: Mapping[ModelKey, float] = field(default_factory=dict)  # successful requests
    tokens: Mapping[tuple[ModelKey, str], float] = field(default_factory=dict)
    compute_seconds: Mapping[ModelKey, float] = field(default_factory=dict)
    failed_requests: Mapping[ModelKey, float] = field(default_factory=dict)
    volume_sizes_gib: Mapping[str, float] = field(default_factory=dict)  # volumes whose size was read
    egress_bytes: float = 0.0  # bytes the pod sent in the interval


@dataclass(frozen=True)
class IntervalCost:
    """The money of one accrued interval [start, end), after attribution; what splitters downstream divide."""

    start: float
    end: float
    by_model: Mapping[ModelKey, Mapping[str, float]]  # USD of this interval by resource
    shares: Mapping[ModelKey, float]

    def model_total(self, key: ModelKey) -> float:
        return sum(self.by_model.get(key, {}).values())


@dataclass(frozen=True)
class GapOutcome:
    """What became of the unmeasured time between a restored checkpoint and now."""

    seconds: float  # now - the checkpoint's last accrual (negative when the clock went back)
    accrued: bool


@dataclass(frozen=True)
class LedgerSnapshot:
    usd_total: Mapping[tuple[str, str, str, str], float]  # (model, version, workload, resource)
    idle_usd_total: Mapping[tuple[str, str, str], float]  # (model, version, resource)
    hourly_usd: Mapping[tuple[str, str, str, str], float]
    requests_total: Mapping[ModelKey, float]
    failed_requests_total: Mapping[ModelKey, float]  # only models whose server reports failures
    tokens_total: Mapping[tuple[str, str, str], float]  # (model, version, kind)
    cost_per_1k_usd: Mapping[ModelKey, float]  # only models with requests in the window
    budget_spend_usd: Mapping[tuple[str, str], float]  # (budget, period label)
    budget_burn_rate: Mapping[str, float]  # periodic budgets only
    budget_periods: Mapping[str, Period]


class CostLedger:
    def __init__(self, config: Config, rates: CostRates, now: float) -> None:
        self._lock = threading.Lock()
        self._usd: dict[tuple[str, str, str, str], float] = {}
        self._idle: dict[tuple[str, str, str], float] = {}
        self._requests: dict[ModelKey, float] = {}
        self._failed: dict[ModelKey, float] = {}
        self._tokens: dict[tuple[str, str, str], float] = {}
        self._window: dict[ModelKey, deque[tuple[float, float, float]]] = {}
        self._budget_spend: dict[tuple[str, str], float] = {}
        self._budget_period_end: dict[tuple[str, str], float] = {}
        self._hourly: dict[tuple[str, str, str, str], float] = {}
        self._budget_rate_usd_per_hour: dict[str, float] = {}
        self._budget_hosted_usd_per_hour: dict[str, float] = {}  # API spend rate, beside the pod's own
        self._last_shares: dict[ModelKey, float] = {}
        self._since = now
        self._accrued_until = now
        self._restored_rates: dict[str, float] | None = None
        self._volume_sizes_gib: dict[str, float] = {}  # last read, kept while a volume cannot be read
        self.reconfigure(config, rates, now)

    @property
    def accrued_until(self) -> float:
        """End of the last interval accrued, Unix seconds."""
        return self._accrued_until

    def reconfigure(self, config: Config, rates: CostRates, now: float) -> None:
        """Adopt a new config: keep totals of models and budgets that remain, drop the rest."""
        with self._lock:
            self._adopt(config, rates, now)

    def _adopt(self, config: Config, rates: CostRates, now: float) -> None:
        self._config = config
        self._rates = rates
        models = {m.key for m in config.models}
        budgets = {b.name for b in config.budgets}
        for store in (self._usd, self._idle, self._tokens, self._hourly):
            for key in [k for k in store if (k[0], k[1]) not in models]:
                del store[key]
        for store in (self._requests, self._failed, self._window, self._last_shares):
            for key in [k for k in store if k not in models]:
                del store[key]
        for store in (self._budget_spend, self._budget_period_end):
            for key in [k for k in store if k[0] not in budgets]:
                del store[key]
        for model in config.models:
            self._requests.setdefault(model.key, 0.0)
            if model.server is not None and Q.FAILED_REQUESTS in model.server.preset.metrics:
                self._failed.setdefault(model.key, 0.0)
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
        """Hourly rates by resource; network is 0 here (it is priced by the bytes a measured interval sent)."""
        rates = self._rates.static_usd_per_hour()
        if self._rates.energy_usd_per_kwh > 0:
            watts = power_watts if power_watts is not None else self._rates.fallback_power_watts
            rates["energy"] = watts / 1000.0 * self._rates.energy_usd_per_kwh
        resources = self._rates.resources()
        if "storage" in resources:
            sizes = {**self._rates.bill.volume_sizes_gib, **self._volume_sizes_gib}
            rates["storage"] = self._rates.bill.storage_usd_per_hour(sizes)
        if "network" in resources:
            rates["network"] = 0.0
        return rates

    def _measured_rates(self, usage: Usage) -> dict[str, float]:
        """The interval's rates: measured power, volume sizes and the egress spread over the interval."""
        self._volume_sizes_gib.update(usage.volume_sizes_gib)
        rates = self._resource_rates(usage.gpu_power_watts)
        if "network" in rates:
            rates["network"] = self._rates.bill.egress_usd(usage.egress_bytes) / ((usage.end - usage.start) / 3600.0)
        return rates

    def _set_rates(self, rates: dict[str, float], shares: dict[ModelKey, float],
                   resource_shares: Mapping[str, Mapping[ModelKey, float]] | None = None) -> None:
        tenant_budgets = {b.name for b in self._config.budgets if b.selector.tenants}
        self._budget_rate_usd_per_hour = {k: v for k, v in self._budget_rate_usd_per_hour.items()
                                          if k in tenant_budgets}  # set by add_budget_spend
        resource_shares = resource_shares or {}
        for model in self._config.models:
            for resource, rate in rates.items():
                share = resource_shares.get(resource, shares)[model.key]
                self._hourly[(*model.key, model.workload, resource)] = rate * share
        for budget in self._config.budgets:
            if budget.selector.tenants:
                continue
            self._budget_rate_usd_per_hour[budget.name] = sum(
                rate * resource_shares.get(resource, shares)[m.key] for m in self._config.models
                if budget.selector.matches(m) for resource, rate in rates.items())

    def _shares(self, usage: Usage, by_requests: bool = False) -> dict[ModelKey, float]:
        """Each model's share of the interval's cost by work done: compute time, else requests served
        (successful and failed alike: both used the hardware), else equal. `by_requests`: requests even
        under compute-time attribution (egress follows the responses, not the GPU time)."""
        models = self._config.models
        weights = None
        if self._config.attribution == "compute_time" and not by_requests:
            weights = {m.key: max(usage.compute_seconds.get(m.key, 0.0), 0.0) for m in models}
            if sum(weights.values()) <= 0:
                weights = None
        if weights is None:
            weights = {m.key: max(usage.requests.get(m.key, 0.0), 0.0) + max(usage.failed_requests.get(m.key, 0.0), 0.0)
                       for m in models}
        total = sum(weights.values())
        if total <= 0:
            return {m.key: 1.0 / len(models) for m in models}
        return {key: weight / total for key, weight in weights.items()}

    def _known_shares(self) -> dict[ModelKey, float]:
        """The last measured shares over today's models, renormalised; equal where none is known."""
        models = self._config.models
        known = {m.key: self._last_shares.get(m.key, 0.0) for m in models}
        total = sum(known.values())
        if total <= 0:
            return {m.key: 1.0 / len(models) for m in models}
        return {key: share / total for key, share in known.items()}

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
        """Accrue the cost of one measured interval; returns that interval's attributed money."""
        if usage.end - usage.start <= 0:
            return IntervalCost(usage.start, usage.end, {}, {})
        with self._lock:
            rates = self._measured_rates(usage)
            shares = self._shares(usage)
            by_resource = {"network": self._shares(usage, by_requests=True)} if "network" in rates else {}
            interval = self._accrue(usage.start, usage.end, rates, shares, self._idle_fractions(usage), by_resource)
            for model in self._config.models:
                requests = max(usage.requests.get(model.key, 0.0), 0.0)
                self._requests[model.key] += requests
                failed = max(usage.failed_requests.get(model.key, 0.0), 0.0)
                if failed > 0 or model.key in self._failed:
                    self._failed[model.key] = self._failed.get(model.key, 0.0) + failed
                for kind in TOKEN_KINDS:
                    tokens = usage.tokens.get((model.key, kind), 0.0)
                    if tokens > 0:
                        key = (*model.key, kind)
                        self._tokens[key] = self._tokens.get(key, 0.0) + tokens
                model_cost = sum(interval.by_model[model.key].values())
                self._window[model.key].append((usage.end, model_cost, requests))
            self._last_shares = dict(shares)
            self._prune(usage.end)
            return interval

    def accrue_unmeasured(self, start: float, end: float) -> IntervalCost:
        """Accrue time nobody measured (the last moments before a shutdown): the allocation's price,
        the last known shares, no idle cost (utilization unknown). Not counted in cost per 1k."""
        if end - start <= 0:
            return IntervalCost(start, end, {}, {})
        with self._lock:
            interval = self._accrue(start, end, self._resource_rates(None), self._known_shares(), {})
            self._prune(end)
            return interval

    def _accrue(self, start: float, end: float, rates: Mapping[str, float], shares: Mapping[ModelKey, float],
                idle: Mapping[str, float],
                resource_shares: Mapping[str, Mapping[ModelKey, float]] | None = None) -> IntervalCost:
        """Accrue the interval's money by model: each resource by the shares, or its own shares if given."""
        hours = (end - start) / 3600.0
        by_model: dict[ModelKey, dict[str, float]] = {}
        resource_shares = resource_shares or {}
        for model in self._config.models:
            costs = by_model.setdefault(model.key, {})
            for resource, rate in rates.items():
                cost = rate * hours * resource_shares.get(resource, shares)[model.key]
                costs[resource] = cost
                key = (*model.key, model.workload, resource)
                self._usd[key] = self._usd.get(key, 0.0) + cost
                if resource in idle:
                    self._idle[(*model.key, resource)] += cost * idle[resource]
            self._record_budgets(model, sum(costs.values()), start, end)
        self._set_rates(dict(rates), dict(shares), resource_shares)
        self._accrued_until = max(self._accrued_until, end)
        return IntervalCost(start, end, by_model, dict(shares))

    def _record_budgets(self, model: Model, cost: float, start: float, end: float) -> None:
        seconds = end - start
        for budget in self._matching_budgets(model):
            for period, part in split_by_period(budget.period, start, end):
                key = (budget.name, period.label)
                self._budget_spend[key] = self._budget_spend.get(key, 0.0) + cost * part / seconds
                self._budget_period_end[key] = period.end

    def _matching_budgets(self, model: Model) -> list[Budget]:
        return [b for b in self._config.budgets if b.selector.matches(model) and not b.selector.tenants]

    def add_budget_spend(self, name: str, start: float, end: float, usd: float) -> None:
        """Count spend measured elsewhere (a tenant budget's share of its models' cost) against a budget."""
        self._add_spend(name, start, end, usd, self._budget_rate_usd_per_hour)

    def add_hosted_spend(self, name: str, start: float, end: float, usd: float) -> None:
        """Count API spend read from a gateway against a budget, beside the pod's own cost and burn rate."""
        self._add_spend(name, start, end, usd, self._budget_hosted_usd_per_hour)

    def _add_spend(self, name: str, start: float, end: float, usd: float, rates: dict[str, float]) -> None:
        budget = next((b for b in self._config.budgets if b.name == name), None)
        if budget is None or end <= start:
            return
        with self._lock:
            for period, part in split_by_period(budget.period, start, end):
                key = (budget.name, period.label)
                self._budget_spend[key] = self._budget_spend.get(key, 0.0) + usd * part / (end - start)
                self._budget_period_end[key] = period.end
            rates[name] = usd / ((end - start) / 3600.0)

    def _prune(self, now: float) -> None:
        horizon = now - self._config.collection.cost_window_seconds
        for window in self._window.values():
            while window and window[0][0] <= horizon:
                window.popleft()
        expired = [k for k, end in self._budget_period_end.items() if end <= now - ENDED_PERIOD_RETENTION_SECONDS]
        for key in expired:
            del self._budget_period_end[key]
            del self._budget_spend[key]

    # --- restart safety (section "ledger" of the checkpoint) ---------------------
    def export_state(self) -> dict:
        """The totals, shares and rates a later process needs to continue these counters."""
        with self._lock:
            return encode(LedgerState(
                since=self._since,
                accrued_until=self._accrued_until,
                usd=dict(self._usd),
                idle=dict(self._idle),
                requests=dict(self._requests),
                failed_requests=dict(self._failed),
                tokens=dict(self._tokens),
                budget_spend={k: (v, self._budget_period_end[k]) for k, v in self._budget_spend.items()},
                window={k: tuple(v) for k, v in self._window.items() if v},
                shares=dict(self._last_shares),
                rates=self._resource_rates(None),
            ))

    def restore_state(self, state: dict) -> None:
        """Continue from an exported state, as a config reload would: totals of models and budgets
        still configured are kept, the rest dropped. Raises ValueError, changing nothing, on a bad state."""
        restored = decode(state)
        with self._lock:
            self._since, self._accrued_until = restored.since, restored.accrued_until
            self._usd, self._idle = dict(restored.usd), dict(restored.idle)
            self._requests, self._failed = dict(restored.requests), dict(restored.failed_requests)
            self._tokens = dict(restored.tokens)
            self._budget_spend = {k: v[0] for k, v in restored.budget_spend.items()}
            self._budget_period_end = {k: v[1] for k, v in restored.budget_spend.items()}
            self._window = {k: deque(v) for k, v in restored.window.items()}
            self._last_shares = dict(restored.shares)
            self._restored_rates = dict(restored.rates)
            self._adopt(self._config, self._rates, restored.accrued_until)

    def catch_up(self, now: float, max_gap_seconds: float) -> GapOutcome:
        """Accrue the time between the restored state's last accrual and `now` at the allocation's
        price in force then, by the last known shares, without idle cost, split at period
        boundaries. A gap longer than `max_gap_seconds` (or a clock that went back) is not accrued."""
        with self._lock:
            gap = now - self._accrued_until
            rates = self._restored_rates if self._restored_rates else self._resource_rates(None)
            self._restored_rates = None
            if gap <= 0 or gap > max_gap_seconds:
                self._accrued_until = max(self._accrued_until, now)
                return GapOutcome(gap, False)
            self._accrue(now - gap, now, rates, self._known_shares(), {})
            self._prune(now)
            return GapOutcome(gap, True)

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
                if budget.period == "job":
                    continue  # a job has no period length, so no affordable rate and no burn rate
                affordable_per_hour = budget.amount_usd / (periods[budget.name].length_seconds / 3600.0)
                rate = (self._budget_rate_usd_per_hour.get(budget.name, 0.0)
                        + self._budget_hosted_usd_per_hour.get(budget.name, 0.0))
                burn[budget.name] = rate / affordable_per_hour
            return LedgerSnapshot(
                usd_total=dict(self._usd),
                idle_usd_total=dict(self._idle),
                hourly_usd=dict(self._hourly),
                requests_total=dict(self._requests),
                failed_requests_total=dict(self._failed),
                tokens_total=dict(self._tokens),
                cost_per_1k_usd=per_1k,
                budget_spend_usd=spend,
                budget_burn_rate=burn,
                budget_periods=periods,
            )
