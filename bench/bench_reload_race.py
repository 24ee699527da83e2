"""Reloads racing scrapes: how many scrapes miss a family the config defines.

A reload loop alternates between two configs (adding and removing a budget and a
model, ticking after each); a scrape loop renders /metrics and counts scrapes
without the cost families, or whose budgets and models match neither config.
Run on this tree, and with `--tree DIR` on another checkout's package (an
older commit) for the before figure: `PYTHONPATH=DIR/exporter python -m bench.bench_reload_race`.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

CONFIGS = (
    "allocation: {vcpus: 4, memory_gib: 16}\nmodels: [{name: m1}, {name: m2}]\n"
    "budgets: [{name: b1, amount_usd: 100, selector: {models: [m1]}}]\n",
    "allocation: {vcpus: 4, memory_gib: 16}\nmodels: [{name: m1}, {name: m3, version: v2}]\n"
    "budgets: [{name: b1, amount_usd: 100, selector: {models: [m1]}},\n"
    "          {name: b2, amount_usd: 5, period: day, selector: {models: [m3]}}]\n",
)
EXPECTED = ({("b1",), ("m1", "m2")}, {("b1", "b2"), ("m1", "m3")})


def registry_of(runtime):
    """The registry over a runtime, whichever way this tree builds it."""
    from ml_cost_exporter.exposition.collectors import build_registry

    state = getattr(runtime, "state", None)
    return build_registry(state) if callable(state) else build_registry(runtime)


def complete(text: str) -> bool:
    budgets, models, names = set(), set(), set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            if sample.name == "mlcost_budget_limit_usd":
                budgets.add(sample.labels["budget"])
            elif sample.name == "mlcost_model_info":
                models.add(sample.labels["model"])
    shown = {tuple(sorted(budgets)), tuple(sorted(models))}
    return "mlcost_usd" in names and "mlcost_budget_spend_usd" in names and shown in EXPECTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=30_000)
    args = parser.parse_args()
    from ml_cost_exporter.runtime import Clocks, Runtime

    directory = Path(tempfile.mkdtemp(prefix="mlcost-race-"))
    path = directory / "pricing.yaml"
    path.write_text(CONFIGS[0])
    runtime = Runtime(str(path), frozenset(), Clocks(), environ={}, cgroup_root=directory)
    registry = registry_of(runtime)
    stop, reloads = threading.Event(), [0]

    def reload_loop() -> None:
        while not stop.is_set():
            reloads[0] += 1
            path.write_text(CONFIGS[reloads[0] % 2])
            runtime.reload()
            runtime.tick()

    thread = threading.Thread(target=reload_loop, daemon=True)
    thread.start()
    missing, started = 0, time.perf_counter()
    for _ in range(args.scrapes):
        if not complete(generate_latest(registry).decode()):
            missing += 1
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    print(f"reload race: {missing} of {args.scrapes} scrapes missed a family the config defines "
          f"({reloads[0]} reloads in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
