"""`mlcost report --since 30d` for 200 models over a backfilled month: wall time and Prometheus queries.

The baseline, in the same run against the same Prometheus, is the same report read from the raw
counters (`--data raw`); ours reads the model:*:increase1h recordings. History: 30 days at a 1 h step
(Prometheus runs with a 1 h lookback), 203 models, built with promtool like the tests' history.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.common import REPO
from harness import mlcost_history
from harness.net import free_port, wait_until

MODELS = 200
START = datetime(2026, 3, 2, tzinfo=UTC).timestamp()


def _report(url: str, data: str) -> tuple[float, int, float]:
    """(seconds end to end, queries sent, total USD) of one run of the console script."""
    script = Path(sys.executable).with_name("mlcost")
    begin = time.perf_counter()
    result = subprocess.run([str(script), "report", "--since", "30d", "--until", "2026-04-01", "--format", "json",
                             "--data", data, "--prometheus.url", url], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - begin
    body = json.loads(result.stdout)
    return elapsed, body["meta"]["queries"], body["meta"]["total_usd"]


def _blocks(url: str) -> float:
    """Prometheus's own count of loaded blocks, from its /metrics."""
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("prometheus_tsdb_blocks_loaded "):
            return float(line.split()[1])
    return -1.0


def _wait_for_compaction(url: str) -> None:
    """Prometheus compacts the backfilled 2h blocks after it starts; measure once the block count is stable."""
    first = _blocks(url)
    wait_until(lambda: _blocks(url) < first / 4, 300, interval=1, what="compaction of the backfilled blocks")
    last, stable_since = _blocks(url), time.monotonic()
    while time.monotonic() - stable_since < 10:  # until no compaction has changed the count for 10 s
        time.sleep(1)
        if _blocks(url) != last:
            last, stable_since = _blocks(url), time.monotonic()
    print(f"compacted {first:.0f} backfilled blocks into {last:.0f}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mlcost-bench-report-"))
    began = time.perf_counter()
    data = mlcost_history.create_blocks(root / "tsdb", recorded=True, extra_models=MODELS, start_time=START,
                                        step=3600.0, rules_from=START)
    print(f"backfill: {time.perf_counter() - began:.0f} s")
    (root / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    prometheus = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=50y",
                                   "--query.lookback-delta=1h", f"--web.listen-address=127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 120, what="Prometheus")
        _wait_for_compaction(url)
        runs = {"recorded": [], "raw": []}
        for _ in range(5):
            for mode in runs:
                runs[mode].append(_report(url, mode))
        for mode, results in runs.items():
            seconds = statistics.median(r[0] for r in results)
            print(f"report --since 30d, {MODELS + 3} models, {mode}: {seconds:.2f} s end to end, "
                  f"{results[0][1]} queries, total ${results[0][2]:,.2f}")
        ratio = statistics.median(r[0] for r in runs["recorded"]) / statistics.median(r[0] for r in runs["raw"])
        print(f"recorded / raw wall time: {ratio:.2f}")
    finally:
        prometheus.terminate()
        prometheus.wait(10)


if __name__ == "__main__":
    main()
