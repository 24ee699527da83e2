"""Token economics families: phase cost, cost per 1M tokens, prefix-cache savings, cost per tenant.

Built fresh on every scrape from snapshots of the runtime's accumulators; the
per-1M gauges are absent while the cost window has no tokens, like cost per 1k.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_cost_exporter.runtime import Runtime

MODEL = ["model", "version"]


class TokenCollector:
    name = "tokens"

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        snapshot = runtime.tokens.economics.snapshot(runtime.clocks.wall())
        phase = CounterMetricFamily(
            "mlcost_phase_usd", "Accrued cost of the model split between prefill (prompt) and decode (generation), "
            "USD; by the server's phase timing, else by weighted tokens. Sums to the model's mlcost_usd_total "
            "from its first token on.", labels=[*MODEL, "phase"])
        for labels, value in sorted(snapshot.phase_usd_total.items()):
            phase.add_metric(list(labels), value)
        yield phase
        per_phase = GaugeMetricFamily(
            "mlcost_phase_cost_per_1m_tokens_usd", "Phase cost per 1,000,000 tokens of that phase (prefill: prompt "
            "tokens, decode: generated tokens) over the rolling cost window, USD; absent without tokens.",
            labels=[*MODEL, "phase"])
        for labels, value in sorted(snapshot.phase_cost_per_1m_usd.items()):
            per_phase.add_metric(list(labels), value)
        yield per_phase
        overall = GaugeMetricFamily(
            "mlcost_cost_per_1m_tokens_usd", "Model cost per 1,000,000 tokens (prompt and generated) over the "
            "rolling cost window, USD; absent without tokens.", labels=MODEL)
        for labels, value in sorted(snapshot.cost_per_1m_usd.items()):
            overall.add_metric(list(labels), value)
        yield overall
        yield from self._cache(snapshot)
        yield from self._tenants()

    def _cache(self, snapshot) -> Iterator[Metric]:
        cached = CounterMetricFamily("mlcost_prompt_cached_tokens", "Prompt tokens served from the server's "
                                     "prefix cache instead of being computed.", labels=MODEL)
        for labels, value in sorted(snapshot.cached_prompt_tokens_total.items()):
            cached.add_metric(list(labels), value)
        yield cached
        ratio = GaugeMetricFamily("mlcost_prompt_cache_hit_ratio", "Fraction of prompt tokens served from the "
                                  "prefix cache over the rolling cost window; absent without prompt tokens.",
                                  labels=MODEL)
        for labels, value in sorted(snapshot.cache_hit_ratio.items()):
            ratio.add_metric(list(labels), value)
        yield ratio
        savings = CounterMetricFamily(
            "mlcost_prompt_cache_savings_usd", "What computing the cached prompt tokens would have cost at the "
            "model's current prefill cost per computed prompt token, USD (a saving, never part of cost).",
            labels=MODEL)
        for labels, value in sorted(snapshot.cache_savings_usd_total.items()):
            savings.add_metric(list(labels), value)
        yield savings

    def _tenants(self) -> Iterator[Metric]:
        runtime = self._runtime
        if runtime.config.tenants is None:
            return
        snapshot = runtime.tokens.tenants.snapshot()
        usd = CounterMetricFamily(
            "mlcost_tenant_usd", "Accrued cost of the model attributed to the tenant by its share of the gateway's "
            "tokens, USD; tenant=\"other\" sums tenants over max_tenants, \"unattributed\" is cost of intervals "
            "without gateway tokens. Sums to the model's mlcost_usd_total.", labels=[*MODEL, "tenant"])
        for labels, value in sorted(snapshot.usd_total.items()):
            usd.add_metric(list(labels), value)
        yield usd
        tokens = CounterMetricFamily("mlcost_tenant_tokens", "Tokens the gateway counted for the tenant and model.",
                                     labels=[*MODEL, "tenant", "kind"])
        for labels, value in sorted(snapshot.tokens_total.items()):
            tokens.add_metric(list(labels), value)
        yield tokens
        yield GaugeMetricFamily("mlcost_exporter_tenants_tracked", "Distinct tenants tracked with their own series; "
                                "at mlcost_exporter_tenants_limit new tenants go to tenant=\"other\".",
                                value=snapshot.tracked)
        yield GaugeMetricFamily("mlcost_exporter_tenants_limit", "Configured tenants.max_tenants.",
                                value=snapshot.limit)
