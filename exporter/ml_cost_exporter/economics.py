"""Token economics at runtime: reads the gateways and splits each recorded interval by phase and tenant.

Sits beside the runtime (it uses sources and the cost model, and the runtime
calls it once a tick), so the runtime's own sampling stays as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from ml_cost_exporter.config.presets import PHASE_QUANTITIES
from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.cost.ledger import CostLedger, IntervalCost
from ml_cost_exporter.cost.tenants import TenantLedger
from ml_cost_exporter.cost.tokens import TokenEconomics, TokenSignals
from ml_cost_exporter.sources.gateway import GatewayReading, GatewaySource
from ml_cost_exporter.sources.server import ServerReading

log = logging.getLogger(__name__)
ModelKey = tuple[str, str]
_SIGNAL_FIELDS = {"prompt_tokens": "prompt_tokens", "generation_tokens": "generation_tokens",
                  **{q: q for q in PHASE_QUANTITIES}}


def token_signals(readings: Iterable[ServerReading]) -> dict[ModelKey, TokenSignals]:
    """Each model's token and phase deltas of one tick, summed over the servers that report it."""
    sums: dict[ModelKey, dict[str, float]] = {}
    for reading in readings:
        for key, quantities in reading.deltas.items():
            for quantity, delta in quantities.items():
                name = _SIGNAL_FIELDS.get(quantity)
                if name is not None:
                    slot = sums.setdefault(key, {})
                    slot[name] = slot.get(name, 0.0) + delta
    return {key: replace(TokenSignals(), **values) for key, values in sums.items()}


def _pinned_tenants(config: Config) -> list[str]:
    return [t for b in config.budgets for t in b.selector.tenants]


class TokenAccounting:
    """Gateway sources plus the phase and tenant accumulators, kept in step with the live config."""

    def __init__(self, config: Config, monotonic: Callable[[], float],
                 fetch: Callable[[str], str] | None = None, read_gateways: bool = True) -> None:
        self._monotonic = monotonic
        self._read_gateways = read_gateways  # off with the server collector
        self._fetch = fetch
        self.gateways: dict[str, GatewaySource] = {}
        models = [m.key for m in config.models]
        self.economics = TokenEconomics(models, config.token_weights, config.collection.cost_window_seconds)
        limit = config.tenants.max_tenants if config.tenants else 1
        self.tenants = TenantLedger(models, limit, _pinned_tenants(config))
        self.dropped_series_total: dict[str, float] = {}
        self.invalid_samples_total: dict[str, float] = {}
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Adopt a new config: keep totals and counter history of what remains."""
        self._config = config
        models = [m.key for m in config.models]
        self.economics.reconfigure(models, config.token_weights, config.collection.cost_window_seconds)
        limit = config.tenants.max_tenants if config.tenants else 1
        self.tenants.reconfigure(models, limit, _pinned_tenants(config))
        previous, self.gateways = self.gateways, {}
        collection = config.collection
        for gateway in config.tenants.gateways if config.tenants and self._read_gateways else ():
            source = GatewaySource(gateway, collection.server_timeout_seconds, collection.max_body_bytes,
                                   collection.max_series_per_source, collection.interval_seconds,
                                   monotonic=self._monotonic, fetch=self._fetch)
            if gateway.url in previous:
                source.adopt_state(previous[gateway.url])
            self.gateways[gateway.url] = source
        for url, old in previous.items():
            if self.gateways.get(url) is not old:
                old.close()

    def sample(self) -> list[GatewayReading]:
        """Fetch every gateway once; a failed one contributes nothing this tick."""
        readings = []
        for source in self.gateways.values():
            reading = source.sample()
            readings.append(reading)
            name = source.name
            self.dropped_series_total[name] = self.dropped_series_total.get(name, 0.0) + reading.dropped_series
            self.invalid_samples_total[name] = self.invalid_samples_total.get(name, 0.0) + reading.invalid_samples
        return readings

    def account(self, interval: IntervalCost, servers: Iterable[ServerReading],
                gateways: Iterable[GatewayReading], ledger: CostLedger) -> None:
        """Split one recorded interval by phase and tenant, and count tenant budgets' spend."""
        phases = self.economics.record(interval, token_signals(servers))
        if not self.gateways:
            return
        tokens: dict = {}
        for reading in gateways:
            for slot, value in reading.tokens.items():
                tokens[slot] = tokens.get(slot, 0.0) + value
        covered = set().union(*(source.covered for source in self.gateways.values()))
        charged = self.tenants.record(interval, phases, tokens, covered)
        self._tenant_budgets(interval, charged, ledger)

    def _tenant_budgets(self, interval: IntervalCost, charged: Mapping[ModelKey, Mapping[str, float]],
                        ledger: CostLedger) -> None:
        for budget in self._config.budgets:
            if not budget.selector.tenants:
                continue
            usd = sum(value for model in self._config.models if budget.selector.matches(model)
                      for tenant, value in charged.get(model.key, {}).items() if tenant in budget.selector.tenants)
            ledger.add_budget_spend(budget.name, interval.start, interval.end, usd)

    def close(self) -> None:
        for source in self.gateways.values():
            source.close()
