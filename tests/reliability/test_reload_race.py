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

from harness.reload_race import CONFIGS, config_shown
from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime

SCRAPES = 1500
DEADLINE_SECONDS = 60.0


def test_reloads_adding_and_removing_budgets_and_models_never_cost_a_scrape_a_family(tmp_path):
    path = tmp_path / "pricing.yaml"
    path.write_text(CONFIGS[0])
    runtime = Runtime(str(path), frozenset(), Clocks(), environ={}, cgroup_root=tmp_path)
    registry = build_registry(runtime.state)
    stop = threading.Event()
    reloads = 0

    def reload_loop() -> None:
        nonlocal reloads
        while not stop.is_set():
            reloads += 1
            path.write_text(CONFIGS[reloads % 2])
            assert runtime.reload()
            runtime.tick()

    reloader = threading.Thread(target=reload_loop, daemon=True)
    reloader.start()
    shown, started = [], time.monotonic()
    try:
        for _ in range(SCRAPES):
            shown.append(config_shown(generate_latest(registry).decode()))
            if time.monotonic() - started > DEADLINE_SECONDS:
                break
    finally:
        stop.set()
        reloader.join(timeout=30)
        runtime.close()
    assert reloads > 10, "the reload loop did not run alongside the scrapes"
    assert set(shown) - {None} == {0, 1}, "the scrapes saw only one config: the race was not exercised"
    assert shown.count(None) == 0, f"{shown.count(None)} of {len(shown)} scrapes were incomplete"
