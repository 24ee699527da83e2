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

from harness.reload_race import CONFIGS, config_shown


def registry_of(runtime):
    """The registry over a runtime, whichever way this tree builds it."""
    from ml_cost_exporter.exposition.collectors import build_registry

    state = getattr(runtime, "state", None)
    return build_registry(state) if callable(state) else build_registry(runtime)


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
        if config_shown(generate_latest(registry).decode()) is None:
            missing += 1
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    print(f"reload race: {missing} of {args.scrapes} scrapes missed a family the config defines "
          f"({reloads[0]} reloads in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
