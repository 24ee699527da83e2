"""Builds grafana/dashboards/*.json: the one source of the dashboards' panels and queries.

Run `python grafana/build_dashboards.py` after changing a panel; a test fails when the JSON files and this
script disagree. Queries use the recording rules of prometheus/rules/ where one exists.
"""

from __future__ import annotations

import json
from pathlib import Path

# Every panel, target and variable reads the Prometheus the `datasource` variable picks (the default
# Prometheus datasource until the user picks another), never a fixed uid: the dashboards import into any
# Grafana (kube-prometheus-stack's names its datasource `prometheus`, the compose stack `mlcost-prometheus`).
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
OUT = Path(__file__).parent / "dashboards"
# Every selector of every query carries the cluster matcher: with one Prometheus per cluster and no `cluster`
# label, the variable has no values and its "All" (.*) matches the absent label; where the series carry one
# (external labels, Thanos, Mimir), it selects clusters, as kubernetes-mixin's dashboards do.
CLUSTER = 'cluster=~"$cluster"'
NS = f'{CLUSTER},namespace=~"$namespace"'
MODEL = f'{CLUSTER},model=~"$model"'
BUDGET = f'{CLUSTER},budget=~"$budget"'
# The exporter-health dashboard reads raw per-target series only: there job and instance select targets.
TARGET = f'{NS},job=~"$job",instance=~"$instance"'
NS_MODEL = f'{NS},model=~"$model"'


def variable(name: str, label: str, query: str, all_value: str = ".*") -> dict:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "includeAll": True, "allValue": all_value, "multi": True, "refresh": 2, "sort": 1, "hide": 0,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


DATASOURCE_VARIABLE = {
    "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "regex": "",
    "hide": 0, "includeAll": False, "multi": False, "refresh": 1,
    "current": {"selected": True, "text": "default", "value": "default"},
}


# Grafana's window for rate(): at least four scrape intervals, widening as the view zooms out, so a long
# range neither aliases nor goes blank.
RATE = "$__rate_interval"

VARIABLES = {
    "datasource": DATASOURCE_VARIABLE,
    # Every exporter serves mlcost_exporter_build_info, so it names every cluster, namespace and target.
    "cluster": variable("cluster", "Cluster", "label_values(mlcost_exporter_build_info, cluster)"),
    "namespace": variable("namespace", "Namespace",
                          f"label_values(mlcost_exporter_build_info{{{CLUSTER}}}, namespace)"),
    "job": variable("job", "Job", f"label_values(mlcost_exporter_build_info{{{NS}}}, job)", all_value=".+"),
    "instance": variable("instance", "Instance",
                         f'label_values(mlcost_exporter_build_info{{{NS},job=~"$job"}}, instance)', all_value=".+"),
    "model": variable("model", "Model", f"label_values(mlcost_usd_total{{{NS}}}, model)"),
    "budget": variable("budget", "Budget", f"label_values(mlcost_budget_limit_usd{{{CLUSTER}}}, budget)"),
}


def right_axis(ref_id: str, unit: str) -> dict:
    """A field override drawing one query on its own right-hand axis with its own unit."""
    return {"matcher": {"id": "byFrameRefID", "options": ref_id},
            "properties": [{"id": "unit", "value": unit}, {"id": "custom.axisPlacement", "value": "right"}]}


def panel(title: str, description: str, targets: list[tuple[str, str]], kind: str = "timeseries",
          unit: str = "currencyUSD", width: int = 12, height: int = 8, stacked: bool = False,
          overrides: tuple[dict, ...] = (), **options) -> dict:
    defaults = {"unit": unit, "decimals": options.pop("decimals", 2)}
    if stacked:
        defaults["custom"] = {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40}
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options,
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                     "instant": kind in ("stat", "gauge", "bargauge", "table")}
                    for i, (expr, legend) in enumerate(targets)],
    }


def dashboard(uid: str, title: str, description: str, variables: list[str], panels: list[dict]) -> dict:
    x = y = row_height = 0
    for number, item in enumerate(panels, start=1):
        width, height = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        item["id"] = number
        item["gridPos"].update(x=x, y=y)
        x += width
        row_height = max(row_height, height)
    return {
        "uid": uid, "title": title, "description": description, "tags": ["ml-cost"], "editable": False,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "utc", "graphTooltip": 1,
        "time": {"from": "now-24h", "to": "now"},
        "links": [{"title": "ML cost", "type": "dashboards", "tags": ["ml-cost"], "asDropdown": True,
                   "icon": "external link", "includeVars": True, "keepTime": True, "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": [VARIABLES[v] for v in ("datasource", "cluster", *variables)]},
        "annotations": {"list": []},
        "panels": panels,
    }


def overview() -> dict:
    start = f"budget:mlcost_budget_period_start_timestamp_seconds:max{{{CLUSTER}}}"
    end = f"budget:mlcost_budget_period_end_timestamp_seconds:max{{{CLUSTER}}}"
    forecast = (f"budget:mlcost_budget_spend_usd:period_to_date{{{BUDGET}}}"
                f" / on (cluster, budget) (time() - {start}) * on (cluster, budget) ({end} - {start})")
    return dashboard("mlcost-overview", "ML cost / Overview",
                     "What every model costs, budgets against their limits, and the cost alerts firing.",
                     ["namespace", "model", "budget"], [
        panel("Spend this period against budget",
              "Period-to-date spend of each budget over all pods (including pods gone away), beside its limit.",
              [(f"budget:mlcost_budget_spend_usd:period_to_date{{{BUDGET}}}", "{{budget}} spent"),
               (f"budget:mlcost_budget_limit_usd:max{{{BUDGET}}}", "{{budget}} limit")],
              kind="bargauge", width=8, displayMode="gradient", orientation="horizontal"),
        panel("Budget used", "Period-to-date spend as a share of the limit; red from 100 %.",
              [(f"budget:mlcost_budget_spend:ratio_period_to_date{{{BUDGET}}}", "{{budget}}")],
              kind="gauge", unit="percentunit", width=8, decimals=0),
        panel("Forecast at period end", "Linear forecast: spend so far / time elapsed x period length, beside "
              "the limit. Early in a period it swings with every spike.",
              [(forecast, "{{budget}} forecast"),
               (f"budget:mlcost_budget_limit_usd:max{{{BUDGET}}}", "{{budget}} limit")],
              kind="bargauge", width=8, displayMode="gradient", orientation="horizontal"),
        panel("Burn rate", "Spend rate over what the budget affords (1 = on track). The fast alert pages at 14.4x "
              "over 1h and 5m.",
              [(f"budget:mlcost_budget_burn:ratio_rate1h{{{BUDGET}}}", "{{budget}} 1h"),
               (f"budget:mlcost_budget_burn:ratio_rate5m{{{BUDGET}}}", "{{budget}} 5m")], unit="none", width=12),
        panel("Cost per 1,000 requests against target", "Cost per 1,000 successful requests over all pods of a "
              "model version (5m), and its target where one is set. Empty without traffic.",
              [(f"model_version:mlcost_cost_per_1k_usd:ratio_rate5m{{{MODEL}}}", "{{model}} {{version}}"),
               (f"max by (model, version) (mlcost_target_cost_per_1k_usd{{{NS_MODEL}}})",
                "{{model}} {{version}} target")], width=12, decimals=4),
        panel("Cost by resource", "Hourly cost rate split by resource: gpu, cpu, memory, storage, network, energy "
              "(on-prem), fixed.",
              [(f"sum by (resource) (rate(mlcost_usd_total{{{NS_MODEL}}}[{RATE}])) * 3600", "{{resource}}")],
              unit="currencyUSD", width=12, stacked=True),
        panel("Idle GPU cost, per month", "GPU cost spent while the GPU was idle in the last hour, "
              "projected over a month (730 h).",
              [(f"sum by (model) (increase(mlcost_idle_usd_total{{{NS_MODEL},resource=\"gpu\"}}[1h])) * 730",
                "{{model}}")], width=12),
        panel("Cost by tenant", "The twenty tenants (teams, users or API keys, as the gateway reports them) "
              "costing most per hour; tenants beyond the exporter's limit are summed into other.",
              [(f"topk(20, sum by (tenant) (rate(mlcost_tenant_usd_total{{{NS_MODEL}}}[{RATE}]))) * 3600",
                "{{tenant}}")], width=12),
        panel("Hosted APIs beside self-hosted", "Dollars an hour spent on hosted APIs through the gateways that read "
              "their spend (by hosted model), beside what the self-hosted models cost an hour.",
              [(f"sum by (model) (rate(mlcost_hosted_usd_total{{{NS}}}[{RATE}])) * 3600", "{{model}} (hosted)"),
               (f"sum(rate(mlcost_usd_total{{{NS}}}[{RATE}])) * 3600", "self-hosted, all models")],
              width=12, stacked=False),
        panel("Most expensive models", "The ten models costing most per hour right now.",
              [(f"topk(10, sum by (model, version) (mlcost_hourly_usd{{{NS}}}))", "{{model}} {{version}}")],
              kind="bargauge", width=12, displayMode="basic", orientation="horizontal"),
        panel("Cost alerts firing", "MLCost alerts pending or firing now, with what they are about.",
              [(f'ALERTS{{{CLUSTER},alertname=~"MLCost.*"}}', "{{alertname}} {{budget}}{{model}}")], kind="table",
              unit="none", width=12, decimals=0),
    ])


def model() -> dict:
    return dashboard("mlcost-model", "ML cost / Model", "One model in detail: cost per request and per token, "
                     "traffic, GPU use beside cost, idle share, and version against version.",
                     ["namespace", "model"], [
        panel("Cost per 1,000 requests", "By model version, over all its pods (5m).",
              [(f"model_version:mlcost_cost_per_1k_usd:ratio_rate5m{{{MODEL}}}", "{{model}} {{version}}")],
              decimals=4),
        panel("Cost per 1,000 tokens", "Cost over prompt plus generated tokens (5m).",
              [(f"sum by (model, version) (rate(mlcost_usd_total{{{NS_MODEL}}}[{RATE}])) / on (model, version) "
                f"(sum by (model, version) (rate(mlcost_tokens_total{{{NS_MODEL}}}[{RATE}])) > 0) * 1000",
                "{{model}} {{version}}")], decimals=4),
        panel("Requests per second", "Successful requests, from the inference server's own counters.",
              [(f"sum by (model, version) (rate(mlcost_requests_total{{{NS_MODEL}}}[{RATE}]))",
                "{{model}} {{version}}")],
              unit="reqps"),
        panel("GPU utilization beside GPU cost", "GPU busy fraction of the pods serving the model (left) and the "
              "model's GPU cost per hour (right).",
              [(f"avg by (instance) (mlcost_gpu_utilization_ratio{{{NS}}}) and on (instance) "
                f"sum by (instance) (mlcost_hourly_usd{{{NS_MODEL}}})", "{{instance}} utilization"),
               (f"sum by (model) (mlcost_hourly_usd{{{NS_MODEL},resource=\"gpu\"}})", "{{model}} GPU $/h")],
              unit="percentunit", overrides=(right_axis("B", "currencyUSD"),)),
        panel("Hourly cost against its usual band", "The model's cost in each hour beside the band of the same hour "
              "of the week over the last weeks (median, and median +/- the MAD-based half-width): MLCostAnomaly "
              "fires when the cost stays above the band. Empty until four weeks of history exist.",
              [(f"model:mlcost_usd:sum_increase1h{{{MODEL}}}", "{{model}} this hour"),
               (f"model:mlcost_usd:sum_increase1h_median4w{{{MODEL}}}", "{{model}} usual (median)"),
               (f"model:mlcost_usd:sum_increase1h_upper4w{{{MODEL}}}", "{{model}} band top"),
               (f"model:mlcost_usd:sum_increase1h_lower4w{{{MODEL}}}", "{{model}} band bottom")], decimals=4),
        panel("Idle share of GPU cost", "Share of the GPU cost spent while the GPU was idle, over 6 hours.",
              [(f"model:mlcost_gpu_idle:ratio_rate6h{{{MODEL}}}", "{{model}}")], unit="percentunit"),
        panel("Cost per 1M tokens, by phase", "Cost per million tokens of prefill (prompt) and decode (generation), "
              "over all pods of a model version (5m); split by the server's phase timing or token weights.",
              [(f"model_version_phase:mlcost_phase_cost_per_1m_tokens_usd:ratio_rate5m{{{MODEL}}}",
                "{{version}} {{phase}}"),
               (f"model_version:mlcost_cost_per_1m_tokens_usd:ratio_rate5m{{{MODEL}}}", "{{version}} all tokens")],
              decimals=4),
        panel("Prompt cache savings", "Dollars an hour the prefix cache saves at the current prompt-token cost "
              "(left), and the share of prompt tokens served from cache (right).",
              [(f"model_version:mlcost_prompt_cache_savings_usd:rate5m{{{MODEL}}} * 3600", "{{version}} $/h saved"),
               (f"model_version:mlcost_prompt_cache_hit:ratio_rate5m{{{MODEL}}}", "{{version}} hit ratio")],
              overrides=(right_axis("B", "percentunit"),)),
        panel("Energy per 1,000 requests", "Measured GPU energy per 1,000 successful requests, watt-hours "
              "(left), and the carbon it stands for per hour, grams CO2e (right).",
              [(f"sum by (model, version) (rate(mlcost_energy_joules_total{{{NS_MODEL}}}[{RATE}])) / on (model, "
                f"version) (sum by (model, version) (rate(mlcost_requests_total{{{NS_MODEL}}}[{RATE}])) > 0) "
                "* 1000 / 3600", "{{version}} Wh/1k"),
               (f"sum by (model, version) (rate(mlcost_carbon_grams_total{{{NS_MODEL}}}[{RATE}])) * 3600",
                "{{version}} gCO2e/h")],
              unit="watth", overrides=(right_axis("B", "massg"),)),
        panel("Cost against quality", "Per version: cost per 1,000 requests, the model's own quality figure and "
              "cost per 1,000 good results, so a cheaper version that loses accuracy shows.",
              [(f"model_version:mlcost_cost_per_1k_usd:ratio_rate5m{{{MODEL}}}", "{{version}} $/1k"),
               (f"max by (model, version) (mlcost_model_quality{{{NS_MODEL}}})", "{{version}} quality"),
               (f"max by (model, version) (mlcost_cost_per_1k_good_results_usd{{{NS_MODEL}}})",
                "{{version}} $/1k good")], kind="table", decimals=4),
        panel("Training: cost per epoch and at completion", "A training job's cost per epoch over the cost "
              "window (left) and its projected cost at completion (right), summed over its pods.",
              [(f"max by (model, version) (mlcost_training_cost_per_epoch_usd{{{NS_MODEL}}})",
                "{{version}} $/epoch"),
               (f"sum by (model, version) (mlcost_training_projected_cost_usd{{{NS_MODEL}}})",
                "{{version}} projected $")], overrides=(right_axis("B", "currencyUSD"),)),
        panel("Version against version", "Cost per 1,000 requests, requests per second and cost per hour of "
              "each version now: a new version's cost beside the old one.",
              [(f"model_version:mlcost_cost_per_1k_usd:ratio_rate5m{{{MODEL}}}", "{{version}} $/1k"),
               (f"sum by (model, version) (rate(mlcost_requests_total{{{NS_MODEL}}}[{RATE}]))", "{{version}} req/s"),
               (f"sum by (model, version) (mlcost_hourly_usd{{{NS_MODEL}}})", "{{version}} $/h")],
              kind="table", decimals=4),
    ])


def exporter_health() -> dict:
    return dashboard("mlcost-exporter", "ML cost / Exporter health", "Whether the cost figures can be trusted: "
                     "collectors, sources, config reloads and dropped series.", ["namespace", "job", "instance"], [
        panel("Exporters up", "Targets serving ml-cost-exporter metrics that answer scrapes.",
              [(f"up{{{TARGET}}} and on (job, instance) mlcost_exporter_build_info{{{TARGET}}}", "{{instance}}")],
              kind="stat", unit="none", width=6, decimals=0),
        panel("Collector success", "1 when the collector's last run succeeded.",
              [(f"mlcost_exporter_collector_success{{{TARGET}}}", "{{instance}} {{collector}}")],
              unit="none", width=9, decimals=0),
        panel("Collector duration", "How long each collector's last run took.",
              [(f"mlcost_exporter_collector_duration_seconds{{{TARGET}}}", "{{instance}} {{collector}}")],
              unit="s", width=9, decimals=3),
        panel("Sources up", "NVML, the process table and each inference server's /metrics.",
              [(f"mlcost_exporter_source_up{{{TARGET}}}", "{{instance}} {{source}}")], unit="none", width=8,
              decimals=0),
        panel("Config reloads", "1 after a good config load, 0 while a rejected config is ignored; and how long "
              "ago the last good load was.",
              [(f"mlcost_exporter_config_last_reload_successful{{{TARGET}}}", "{{instance}} last reload ok"),
               (f"time() - mlcost_exporter_config_last_reload_success_timestamp_seconds{{{TARGET}}}",
                "{{instance}} seconds since good load")], unit="none", width=8),
        panel("Dropped and invalid samples", "Series over the per-source cap and malformed samples, per second.",
              [(f"rate(mlcost_exporter_dropped_series_total{{{TARGET}}}[{RATE}])", "{{instance}} dropped"),
               (f"rate(mlcost_exporter_invalid_samples_total{{{TARGET}}}[{RATE}])", "{{instance}} invalid")],
              unit="none", width=8, decimals=3),
    ])


DASHBOARDS = {"ml-cost-overview.json": overview, "ml-cost-model.json": model,
              "ml-cost-exporter-health.json": exporter_health}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
