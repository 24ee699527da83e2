"""The accounting books: every account a tick's measurement is recorded in, kept in step with the config.

The ledger accrues and attributes the interval's money; the token, tenant,
energy and training accounts split that same money further. The books know
nothing of where a measurement came from (sources convert their readings into
a `Measurement`), and their snapshot is what a published State carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ml_cost_exporter.config.presets import PHASE_QUANTITIES
from ml_cost_exporter.config.presets import Quantity as Q
from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.config.units import GIB, ModelKey
from ml_cost_exporter.cost.cache import CacheSavings, CacheSavingsSnapshot
from ml_cost_exporter.cost.energy import EnergyAccount, EnergySnapshot
from ml_cost_exporter.cost.ledger import CostLedger, GapOutcome, IntervalCost, LedgerSnapshot, Usage
from ml_cost_exporter.cost.pricing import CostRates
from ml_cost_exporter.cost.tenants import TenantLedger, TenantSnapshot
from ml_cost_exporter.cost.tokens import TokenEconomics, TokenSignals, TokenSnapshot
from ml_cost_exporter.cost.training import TrainingAccount, TrainingSnapshot

Quantities = Mapping[ModelKey, Mapping[str, float]]
TenantTokens = Mapping[tuple[ModelKey, str, str], float]  # (model, raw tenant label, kind) -> tokens
TOKEN_QUANTITIES = {Q.PROMPT_TOKENS: "prompt", Q.GENERATION_TOKENS: "generation"}  # quantity -> token kind
_SIGNAL_FIELDS = {str(q): str(q) for q in (Q.PROMPT_TOKENS, Q.GENERATION_TOKENS, *PHASE_QUANTITIES)}
_USAGE_COUNTS = (Q.REQUESTS, Q.FAILED_REQUESTS, Q.COMPUTE_SECONDS)


@dataclass(frozen=True)
class Measurement:
    """What one tick measured over [start, end): the pod's resources, the servers' and the gateways' counters."""

    start: float
    end: float
    gpu_utilization: float | None = None  # 0..1, mean over the pod's GPUs
    gpu_power_watts: float | None = None  # sum over the pod's GPUs
    gpu_energy_joules: float | None = None  # None where any GPU reports neither energy nor power
    cpu_used_cores: float | None = None
    memory_used_bytes: float | None = None
    deltas: Quantities = field(default_factory=dict)  # per model, increments of every quantity read
    values: Quantities = field(default_factory=dict)  # per model, current values (gauges such as quality)
    tenant_tokens: TenantTokens = field(default_factory=dict)
    tenant_models: frozenset[ModelKey] = frozenset()  # models whose cost the gateways' tenants share
    volume_sizes_bytes: Mapping[str, float] = field(default_factory=dict)  # volumes whose size was read
    egress_bytes: float | None = None  # bytes the pod sent; None: the interface counters were not read
    unpriced: tuple[tuple[str, str], ...] = ()  # (source, reason): parts of the bill this tick could not measure
    hosted_usd: Mapping[str, float] = field(default_factory=dict)  # API spend through the gateways, by model


@dataclass(frozen=True)
class BillSnapshot:
    """The storage and egress the books priced, and what they could not."""

    unpriced_total: Mapping[tuple[str, str], float]  # ticks, by (source, reason)
    transmit_bytes_total: float | None  # None: the network source is off
    volume_sizes_bytes: Mapping[str, float]  # last known size of each volume read or given
    hosted_usd_total: Mapping[str, float] = field(default_factory=dict)  # API spend by hosted model


@dataclass(frozen=True)
class BooksSnapshot:
    """Every account as of one instant, consistent with each other (taken under the tick's lock)."""

    ledger: LedgerSnapshot
    tokens: TokenSnapshot
    tenants: TenantSnapshot
    energy: EnergySnapshot
    training: TrainingSnapshot
    cache: CacheSavingsSnapshot
    values: Quantities  # the last current value of every quantity read, per model
    bill: BillSnapshot = BillSnapshot({}, None, {})


def usage_of(measurement: Measurement) -> Usage:
    """The ledger's view of a measurement: resources, requests, failures, compute time and tokens by kind."""
    counts = {name: {key: q[name] for key, q in measurement.deltas.items() if name in q} for name in _USAGE_COUNTS}
    # Token counts by kind; any other quantity is not priced here and never counted as something else.
    tokens = {(key, kind): q[quantity] for key, q in measurement.deltas.items()
              for quantity, kind in TOKEN_QUANTITIES.items() if quantity in q}
    return Usage(measurement.start, measurement.end, measurement.gpu_utilization, measurement.gpu_power_watts,
                 measurement.cpu_used_cores, measurement.memory_used_bytes, requests=counts[Q.REQUESTS],
                 tokens=tokens, compute_seconds=counts[Q.COMPUTE_SECONDS], failed_requests=counts[Q.FAILED_REQUESTS],
                 volume_sizes_gib={name: size / GIB for name, size in measurement.volume_sizes_bytes.items()},
                 egress_bytes=measurement.egress_bytes or 0.0)


def token_signals(deltas: Quantities) -> dict[ModelKey, TokenSignals]:
    """Each model's token and phase increments of one interval."""
    signals = {}
    for key, quantities in deltas.items():
        values = {_SIGNAL_FIELDS[q]: v for q, v in quantities.items() if q in _SIGNAL_FIELDS}
        if values:
            signals[key] = replace(TokenSignals(), **values)
    return signals


def job_cost(ledger: LedgerSnapshot) -> dict[ModelKey, float]:
    """Each model's accrued cost over every resource, USD."""
    totals: dict[ModelKey, float] = {}
    for (model, version, _workload, _resource), value in ledger.usd_total.items():
        totals[(model, version)] = totals.get((model, version), 0.0) + value
    return totals


def _pinned_tenants(config: Config) -> list[str]:
    return [t for b in config.budgets for t in b.selector.tenants]


def _max_tenants(config: Config) -> int:
    return config.tenants.max_tenants if config.tenants else 1


class Books:
    """The ledger and the accounts that split its money: phases, tenants, energy, training."""

    def __init__(self, config: Config, rates: CostRates, now: float) -> None:
        models = [m.key for m in config.models]
        window = config.collection.cost_window_seconds
        self.ledger = CostLedger(config, rates, now)
        self.tokens = TokenEconomics(models, config.token_weights, window)
        self.tenants = TenantLedger(models, _max_tenants(config), _pinned_tenants(config))
        self.energy = EnergyAccount(models, config.energy, window)
        self.training = TrainingAccount(config.models, window)
        self.cache = CacheSavings()
        self._config = config
        self._values: Quantities = {}
        self._bill = BillAccount(config, rates)

    def sections(self) -> dict[str, object]:
        """The accounts by their checkpoint section name."""
        return {"ledger": self.ledger, "tokens": self.tokens, "tenants": self.tenants, "energy": self.energy,
                "training": self.training, "cache": self.cache}

    def reconfigure(self, config: Config, rates: CostRates, now: float) -> None:
        """Adopt a new config or new prices: totals of models and budgets that remain are kept."""
        models = [m.key for m in config.models]
        window = config.collection.cost_window_seconds
        self._config = config
        self.ledger.reconfigure(config, rates, now)
        self.tokens.reconfigure(models, config.token_weights, window)
        self.tenants.reconfigure(models, _max_tenants(config), _pinned_tenants(config))
        self.energy.reconfigure(models, config.energy, window)
        self.training.reconfigure(config.models, window)
        self.cache.keep(set(models))
        self._bill.reconfigure(config, rates)

    def reprice(self, config: Config, rates: CostRates, now: float) -> None:
        """New prices for the same config (GPUs appeared or went away): only the ledger's rates change."""
        self.ledger.reconfigure(config, rates, now)
        self._bill.reconfigure(config, rates)

    def record(self, measurement: Measurement) -> IntervalCost:
        """Accrue one measured interval in every account."""
        usage = usage_of(measurement)
        interval = self.ledger.record(usage)
        phases = self.tokens.record(interval, token_signals(measurement.deltas))
        if measurement.tenant_models:
            charged = self.tenants.record(interval, phases, measurement.tenant_tokens, measurement.tenant_models)
            self._tenant_budgets(interval, charged)
        epochs = {key: q[Q.EPOCHS] for key, q in measurement.deltas.items() if Q.EPOCHS in q}
        self.energy.record(interval, measurement.gpu_energy_joules, usage.requests, epochs)
        self.training.record(interval, measurement.deltas, measurement.values)
        hits = {key: q[Q.CACHE_HITS] for key, q in measurement.deltas.items() if Q.CACHE_HITS in q}
        if hits:
            self.cache.add(interval, usage.requests, hits)
        self._values = measurement.values
        self._bill.record(measurement)
        self._hosted_budgets(measurement)
        return interval

    def _hosted_budgets(self, measurement: Measurement) -> None:
        """Count the gateways' API spend against the budgets that name its hosted models."""
        for budget in self._config.budgets:
            names = budget.selector.hosted_models
            if names:
                usd = sum(v for model, v in measurement.hosted_usd.items() if "*" in names or model in names)
                self.ledger.add_hosted_spend(budget.name, measurement.start, measurement.end, usd)

    def _tenant_budgets(self, interval: IntervalCost, charged: Mapping[ModelKey, Mapping[str, float]]) -> None:
        for budget in self._config.budgets:
            if not budget.selector.tenants:
                continue
            usd = sum(value for model in self._config.models if budget.selector.matches(model)
                      for tenant, value in charged.get(model.key, {}).items() if tenant in budget.selector.tenants)
            self.ledger.add_budget_spend(budget.name, interval.start, interval.end, usd)

    def accrue_unmeasured(self, start: float, end: float) -> None:
        """Accrue time no tick measured (the last moments before a stop) at the allocation's price."""
        self.ledger.accrue_unmeasured(start, end)

    def catch_up(self, now: float, max_gap_seconds: float) -> GapOutcome:
        """Accrue the downtime since a restored checkpoint, within the gap limit."""
        return self.ledger.catch_up(now, max_gap_seconds)

    def snapshot(self, now: float) -> BooksSnapshot:
        ledger = self.ledger.snapshot(now)
        return BooksSnapshot(ledger, self.tokens.snapshot(now), self.tenants.snapshot(), self.energy.snapshot(now),
                             self.training.snapshot(job_cost(ledger)), self.cache.snapshot(), self._values,
                             self._bill.snapshot())


def sum_quantities(parts: Iterable[Quantities]) -> dict[ModelKey, dict[str, float]]:
    """Per-model quantities summed over several servers that report the same model."""
    merged: dict[ModelKey, dict[str, float]] = {}
    for part in parts:
        for key, quantities in part.items():
            slot = merged.setdefault(key, {})
            for quantity, amount in quantities.items():
                slot[quantity] = slot.get(quantity, 0.0) + amount
    return merged


class BillAccount:
    """What the books know of storage and egress beyond their money: bytes sent, sizes, what went unpriced."""

    def __init__(self, config: Config, rates: CostRates) -> None:
        self._unpriced: dict[tuple[str, str], float] = {}
        self._transmit_bytes: float | None = None
        self._sizes: dict[str, float] = {}
        self._hosted: dict[str, float] = {}
        self.reconfigure(config, rates)

    def reconfigure(self, config: Config, rates: CostRates) -> None:
        self._priced_unknown = rates.bill.unpriced  # known when pricing: counted every tick they last
        self._priced_volumes = tuple(rates.bill.volume_usd_per_gib_hour)
        self._egress_priced = rates.bill.egress_usd_per_gib is not None
        names = {v.name for v in config.volumes}
        self._sizes = {name: size for name, size in self._sizes.items() if name in names}
        self._sizes.update({v.name: v.size_gib * GIB for v in config.volumes if v.size_gib is not None})

    def record(self, measurement: Measurement) -> None:
        self._sizes.update(measurement.volume_sizes_bytes)
        for key in (*self._priced_unknown, *measurement.unpriced, *self._unmeasured(measurement)):
            self._unpriced[key] = self._unpriced.get(key, 0.0) + 1.0
        if measurement.egress_bytes is not None:
            self._transmit_bytes = (self._transmit_bytes or 0.0) + measurement.egress_bytes
        for model, usd in measurement.hosted_usd.items():
            self._hosted[model] = self._hosted.get(model, 0.0) + usd

    def _unmeasured(self, measurement: Measurement) -> list[tuple[str, str]]:
        """Priced parts no source measured at all (its collector off, or no size ever read), unless a
        source already said why: they would otherwise be priced at zero without a word."""
        reported = {source for source, _ in measurement.unpriced}
        missing = [(f"volume:{name}", "not_measured") for name in self._priced_volumes
                   if name not in self._sizes and f"volume:{name}" not in reported]
        if self._egress_priced and measurement.egress_bytes is None and not any(
                source.startswith("network") for source in reported):
            missing.append(("network", "not_measured"))
        return missing

    def snapshot(self) -> BillSnapshot:
        return BillSnapshot(dict(self._unpriced), self._transmit_bytes, dict(self._sizes), dict(self._hosted))
