"""Token economics families: phase cost, cost per 1M tokens, prefix-cache savings, cost per tenant.

Built fresh on every scrape from snapshots of the runtime's accumulators; the
per-1M gauges are absent while the cost window has no tokens, like cost per 1k.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_cost_exporter.exposition.families import family
from ml_cost_exporter.runtime import Runtime

MODEL = ["model", "version"]


class TokenCollector:
    name = "tokens"

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        snapshot = runtime.tokens.economics.snapshot(runtime.clocks.wall())
        yield family(CounterMetricFamily, "mlcost_phase_usd",
                     "Accrued cost of the model split between prefill (prompt) and decode (generation), USD; by "
                     "the server's phase timing, else by weighted tokens. Sums to the model's mlcost_usd_total "
                     "from its first token on.", [*MODEL, "phase"], snapshot.phase_usd_total)
        yield family(GaugeMetricFamily, "mlcost_phase_cost_per_1m_tokens_usd",
                     "Phase cost per 1,000,000 tokens of that phase (prefill: prompt tokens, decode: generated "
                     "tokens) over the rolling cost window, USD; absent without tokens.", [*MODEL, "phase"],
                     snapshot.phase_cost_per_1m_usd)
        yield family(GaugeMetricFamily, "mlcost_cost_per_1m_tokens_usd",
                     "Model cost per 1,000,000 tokens (prompt and generated) over the rolling cost window, USD; "
                     "absent without tokens.", MODEL, snapshot.cost_per_1m_usd)
        yield from self._cache(snapshot)
        yield from self._tenants()

    def _cache(self, snapshot) -> Iterator[Metric]:
        yield family(CounterMetricFamily, "mlcost_prompt_cached_tokens",
                     "Prompt tokens served from the server's prefix cache instead of being computed.", MODEL,
                     snapshot.cached_prompt_tokens_total)
        yield family(GaugeMetricFamily, "mlcost_prompt_cache_hit_ratio",
                     "Fraction of prompt tokens served from the prefix cache over the rolling cost window; absent "
                     "without prompt tokens.", MODEL, snapshot.cache_hit_ratio)
        yield family(CounterMetricFamily, "mlcost_prompt_cache_savings_usd",
                     "What computing the cached prompt tokens would have cost at the model's current prefill cost "
                     "per computed prompt token, USD (a saving, never part of cost).", MODEL,
                     snapshot.cache_savings_usd_total)

    def _tenants(self) -> Iterator[Metric]:
        runtime = self._runtime
        if runtime.config.tenants is None:
            return
        snapshot = runtime.tokens.tenants.snapshot()
        yield family(CounterMetricFamily, "mlcost_tenant_usd",
                     "Accrued cost of the model attributed to the tenant by its share of the gateway's tokens, USD; "
                     "tenant=\"other\" sums tenants over max_tenants, \"unattributed\" is cost of intervals without "
                     "gateway tokens. Sums to the model's mlcost_usd_total.", [*MODEL, "tenant"], snapshot.usd_total)
        yield family(CounterMetricFamily, "mlcost_tenant_tokens",
                     "Tokens the gateway counted for the tenant and model.", [*MODEL, "tenant", "kind"],
                     snapshot.tokens_total)
        yield GaugeMetricFamily("mlcost_exporter_tenants_tracked", "Distinct tenants tracked with their own series; "
                                "at mlcost_exporter_tenants_limit new tenants go to tenant=\"other\".",
                                value=snapshot.tracked)
        yield GaugeMetricFamily("mlcost_exporter_tenants_limit", "Configured tenants.max_tenants.",
                                value=snapshot.limit)
