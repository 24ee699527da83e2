"""Reloads that add and remove budgets and models, racing a scrape loop: no scrape may miss a family.

Each scrape reads one published State, so what it shows always belongs to one
config: every budget and model that config defines, with the cost families
complete. Before the frozen State a scrape between the config swap and the
ledger's reconfiguration lost every cost family.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime

CONFIGS = {
    "a": ("allocation: {vcpus: 4, memory_gib: 16}\n"
          "models: [{name: m1}, {name: m2}]\n"
          "budgets: [{name: b1, amount_usd: 100, selector: {models: [m1]}}]\n"),
    "b": ("allocation: {vcpus: 4, memory_gib: 16}\n"
          "models: [{name: m1}, {name: m3, version: v2}]\n"
          "budgets: [{name: b1, amount_usd: 100, selector: {models: [m1]}},\n"
          "          {name: b2, amount_usd: 5, period: day, selector: {models: [m3]}}]\n"),
}
EXPECTED = {"a": ({"b1"}, {"m1", "m2"}), "b": ({"b1", "b2"}, {"m1", "m3"})}
SCRAPES = 1500
DEADLINE_SECONDS = 60.0


def what_a_scrape_shows(text: str) -> tuple[set[str], set[str], set[str], float | None]:
    """(families, budgets with a limit, models with info, the cost collector's success) of one scrape."""
    families, budgets, models, cost_ok = set(), set(), set(), None
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            if sample.name == "mlcost_budget_limit_usd":
                budgets.add(sample.labels["budget"])
            elif sample.name == "mlcost_model_info":
                models.add(sample.labels["model"])
            elif sample.name == "mlcost_exporter_collector_success" and sample.labels["collector"] == "cost":
                cost_ok = sample.value
    return families, budgets, models, cost_ok


def test_reloads_adding_and_removing_budgets_and_models_never_cost_a_scrape_a_family(tmp_path):
    path = tmp_path / "pricing.yaml"
    path.write_text(CONFIGS["a"])
    runtime = Runtime(str(path), frozenset(), Clocks(), environ={}, cgroup_root=tmp_path)
    registry = build_registry(runtime.state)
    stop = threading.Event()
    reloads = 0

    def reload_loop() -> None:
        nonlocal reloads
        while not stop.is_set():
            name = "b" if reloads % 2 == 0 else "a"
            path.write_text(CONFIGS[name])
            assert runtime.reload()
            runtime.tick()
            reloads += 1

    reloader = threading.Thread(target=reload_loop, daemon=True)
    reloader.start()
    incomplete, seen, started = [], set(), time.monotonic()
    try:
        for _ in range(SCRAPES):
            families, budgets, models, cost_ok = what_a_scrape_shows(generate_latest(registry).decode())
            shown = next((name for name, expected in EXPECTED.items() if expected == (budgets, models)), None)
            if shown is None or cost_ok != 1.0 or not {"mlcost_usd", "mlcost_budget_spend_usd"} <= families:
                incomplete.append((sorted(budgets), sorted(models), cost_ok, sorted(families)[:5]))
            seen.add(shown)
            if time.monotonic() - started > DEADLINE_SECONDS:
                break
    finally:
        stop.set()
        reloader.join(timeout=30)
        runtime.close()
    assert reloads > 10, "the reload loop did not run alongside the scrapes"
    assert seen == {"a", "b"}, "the scrapes saw only one config: the race was not exercised"
    assert incomplete == [], f"{len(incomplete)} scrapes were incomplete, e.g. {incomplete[:3]}"
