"""Reloads racing scrapes: two configs that add and remove a budget and a model, and what one scrape shows.

Shared by the race test (tests/reliability/test_reload_race.py) and its benchmark (bench/bench_reload_race.py).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

CONFIGS = (
    "allocation: {vcpus: 4, memory_gib: 16}\nmodels: [{name: m1}, {name: m2}]\n"
    "budgets: [{name: b1, amount_usd: 100, selector: {models: [m1]}}]\n",
    "allocation: {vcpus: 4, memory_gib: 16}\nmodels: [{name: m1}, {name: m3, version: v2}]\n"
    "budgets: [{name: b1, amount_usd: 100, selector: {models: [m1]}},\n"
    "          {name: b2, amount_usd: 5, period: day, selector: {models: [m3]}}]\n",
)
# What each config defines: (budgets, models).
DEFINED = ((("b1",), ("m1", "m2")), (("b1", "b2"), ("m1", "m3")))


def config_shown(text: str) -> int | None:
    """Which config one scrape shows, whole (every budget, every model, the cost families); None if none."""
    budgets, models, names, cost_ok = set(), set(), set(), None
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            if sample.name == "mlcost_budget_limit_usd":
                budgets.add(sample.labels["budget"])
            elif sample.name == "mlcost_model_info":
                models.add(sample.labels["model"])
            elif sample.name == "mlcost_exporter_collector_success" and sample.labels["collector"] == "cost":
                cost_ok = sample.value
    shown = (tuple(sorted(budgets)), tuple(sorted(models)))
    if cost_ok == 0.0 or not {"mlcost_usd", "mlcost_budget_spend_usd"} <= names or shown not in DEFINED:
        return None
    return DEFINED.index(shown)
