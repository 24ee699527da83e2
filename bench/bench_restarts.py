"""Restart safety: the exporter killed with SIGKILL at random moments under real Prometheus.

Each life runs a random 1-6 s, then `kill -9`; the exporter stays down a random
1-10 s before the next start. At the end, Prometheus is asked for the pod's
period-to-date spend (the project's recording rule), `sum(increase(mlcost_usd_total))`
and `resets()` of every cost counter, each compared with the pod's wall time x
hourly price. Wall time starts at the first life's start of accrual (`since` in
the checkpoint, or the first process launch without --storage.path) and ends at
the instant each figure describes.

  .venv/bin/python -m bench.bench_restarts --kills 50            # with --storage.path
  .venv/bin/python -m bench.bench_restarts --kills 50 --no-storage
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from harness.net import free_port
from harness.stackconfig import prometheus_config

CONFIG = """\
allocation: {gpu: {type: h100, count: 1}, vcpus: 8, memory_gib: 64}
models: [{name: chat, version: v1}]
budgets: [{name: pod, amount_usd: 100000, period: month}]
collection: {interval_seconds: 0.25}
"""
COST_COUNTERS = ("mlcost_usd_total", "mlcost_idle_usd_total", "mlcost_budget_spend_usd_total",
                 "mlcost_requests_total")


def wait(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


@dataclass
class Result:
    kills: int
    storage: bool
    wall_seconds: float
    hourly_usd: float
    increase_usd: float  # sum(increase(mlcost_usd_total[...])) at the last scrape
    increase_expected_usd: float
    period_to_date_usd: float
    period_to_date_expected_usd: float
    resets: dict[str, float]

    def lines(self) -> list[str]:
        mode = "with --storage.path" if self.storage else "without --storage.path"
        inc = self.increase_usd / self.increase_expected_usd - 1
        ptd = self.period_to_date_usd / self.period_to_date_expected_usd - 1
        resets = ", ".join(f"{k} {v:.0f}" for k, v in self.resets.items())
        return [f"restarts: {mode}: {self.kills} kills over {self.wall_seconds:.0f} s at ${self.hourly_usd:.4f}/h",
                f"restarts:   sum(increase(mlcost_usd_total)) {self.increase_usd:.6f} vs wall x price "
                f"{self.increase_expected_usd:.6f}: {inc * 100:+.3f} %",
                f"restarts:   period-to-date rule {self.period_to_date_usd:.6f} vs wall x price "
                f"{self.period_to_date_expected_usd:.6f}: {ptd * 100:+.3f} %",
                f"restarts:   resets(): {resets}"]


class Stack:
    """Prometheus scraping one exporter address, and exporter lives started and killed on it."""

    def __init__(self, directory: Path, storage: bool) -> None:
        self.directory = directory
        self.port = free_port()
        self.config = directory / "pricing.yaml"
        self.config.write_text(CONFIG)
        self.state = directory / "state" if storage else None
        self.exporter: subprocess.Popen | None = None
        self.log = open(directory / "exporter.log", "ab")  # noqa: SIM115 - closed in stop()
        prom_port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        path = prometheus_config(directory, f"127.0.0.1:{self.port}", None)
        self.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={directory / 'prom'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: requests.get(f"{self.prometheus_url}/-/ready", timeout=1).ok, what="Prometheus")
        # Discovery takes Prometheus a few seconds; a pod's first cost is counted only once it scrapes.
        wait(self._target_tried, what="Prometheus to try the exporter's address")

    def _target_tried(self) -> bool:
        targets = requests.get(f"{self.prometheus_url}/api/v1/targets", timeout=1).json()["data"]["activeTargets"]
        return any(t["lastScrape"] and not t["lastScrape"].startswith("0001") for t in targets)

    def start_exporter(self) -> float:
        launched = time.time()
        flags = [f"--storage.path={self.state}"] if self.state else []
        self.exporter = subprocess.Popen(
            [sys.executable, "-m", "ml_cost_exporter", f"--config.file={self.config}", "--no-collector.gpu",
             f"--web.listen-address=127.0.0.1:{self.port}", *flags], stdout=self.log, stderr=self.log)
        wait(lambda: requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1).ok, what="the exporter")
        return launched

    def kill_exporter(self) -> None:
        self.exporter.send_signal(signal.SIGKILL)
        self.exporter.wait()

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = requests.get(f"{self.prometheus_url}/api/v1/query", params=params, timeout=10).json()
        if body.get("status") != "success":
            raise SystemExit(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def since(self) -> float:
        document = json.loads((self.state / "mlcost-checkpoint.json").read_text())
        return document["sections"]["ledger"]["since"]

    def stop(self) -> None:
        for process in (self.exporter, self.prometheus):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        self.log.close()


def measure(kills: int, storage: bool, directory: Path, seed: int = 8, up: tuple[float, float] = (1.0, 6.0),
            down: tuple[float, float] = (1.0, 10.0), hourly_usd: float | None = None) -> Result:
    """Kill the exporter `kills` times at random moments, then compare Prometheus's figures with wall x price."""
    rng = random.Random(seed)
    stack = Stack(directory, storage)
    try:
        first_launch = stack.start_exporter()
        for _ in range(kills):
            time.sleep(rng.uniform(*up))
            stack.kill_exporter()
            time.sleep(rng.uniform(*down))
            stack.start_exporter()
        time.sleep(3.0)  # a few scrapes and rule evaluations of the last life
        hourly = hourly_usd or sum(float(s["value"][1]) for s in stack.query("sum(mlcost_hourly_usd)"))
        start = stack.since() if storage else first_launch
        window = f"{int(time.time() - first_launch) + 60}s"
        last_scrape = float(stack.query("max(timestamp(mlcost_usd_total))")[0]["value"][1])
        increase = float(stack.query(f"sum(increase(mlcost_usd_total[{window}]))", last_scrape)[0]["value"][1])
        rule = 'budget:mlcost_budget_spend_usd:period_to_date{budget="pod"}'
        recorded_at = float(stack.query(f"timestamp({rule})")[0]["value"][1])  # the evaluation it comes from
        period_to_date = float(stack.query(rule, recorded_at)[0]["value"][1])
        resets = {}
        for name in COST_COUNTERS:
            result = stack.query(f"sum(resets({name}[{window}]))", last_scrape)
            resets[name] = float(result[0]["value"][1]) if result else 0.0
        return Result(kills, storage, last_scrape - start, hourly, increase, hourly * (last_scrape - start) / 3600,
                      period_to_date, hourly * (recorded_at - start) / 3600, resets)
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--no-storage", dest="storage", action="store_false", help="Run without --storage.path.")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="mlcost-restarts-"))
    os.environ.setdefault("MLCOST_LOG_LEVEL", "warn")
    result = measure(args.kills, args.storage, directory, args.seed)
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
