"""Token economics families: phase cost, cost per 1M tokens, prefix-cache savings, cost per tenant.

Built fresh on every scrape from the published State; the per-1M gauges are
absent while the cost window has no tokens, like cost per 1k.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_cost_exporter.exposition.families import family
from ml_cost_exporter.state import State

MODEL = ["model", "version"]


def token_families(state: State) -> Iterator[Metric]:
    """Phase cost, cost per 1M tokens, the prefix cache and tenants."""
    snapshot = state.books.tokens
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
    yield from _cache(snapshot)
    yield from _tenants(state)


def _cache(snapshot) -> Iterator[Metric]:
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

def _tenants(state: State) -> Iterator[Metric]:
    if state.config.tenants is None:
        return
    snapshot = state.books.tenants
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
