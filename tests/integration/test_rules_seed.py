"""Rules deployed mid-period, seeded from history with prometheus/seed.py, count pods that ended days ago."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from tests.conftest import REPO, free_port, wait_until
from tests.integration.test_rules_vmalert import derived_rules, tool

STEP = 300
# (pod, $ per 5 minutes, first and last sample relative to now in hours): pod-old ran for a day and
# ended three days ago ($288); pod-a has run for two days ($288 so far).
PODS = (("pod-old", 1.0, -96, -72), ("pod-a", 0.5, -48, 0))


def history(now: int) -> str:
    lines = ["# TYPE mlcost_budget_spend_usd counter"]
    for pod, per_step, first, last in PODS:
        for i, t in enumerate(range(now + first * 3600, now + last * 3600 + 1, STEP)):
            lines.append(f'mlcost_budget_spend_usd_total{{budget="b",period="p",instance="{pod}"}} {i * per_step} {t}')
    lines.append("# TYPE mlcost_budget_current_period_info gauge")
    for pod, _, first, last in PODS:
        for t in range(now + first * 3600, now + last * 3600 + 1, STEP):
            lines.append(f'mlcost_budget_current_period_info{{budget="b",period="p",instance="{pod}"}} 1 {t}')
    return "\n".join([*lines, "# EOF"]) + "\n"


def backfill(text: str, source: Path, tsdb: Path) -> None:
    source.write_text(text)
    subprocess.run([tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
                   check=True, capture_output=True, timeout=300)


def start_prometheus(processes, tmp_path: Path, tsdb: Path, rules: list[Path], name: str) -> tuple:
    config = tmp_path / f"{name}.yml"
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": "5s"}, "rule_files": list(map(str, rules))}))
    port = free_port()
    process = processes.start(name, [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                                     "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, timeout=60, what="Prometheus")
    return url, process


def period_to_date(url: str) -> float | None:
    result = requests.get(f"{url}/api/v1/query", params={"query": "budget:mlcost_budget_spend_usd:period_to_date"},
                          timeout=10).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_rules_seeded_from_history_count_pods_gone_before_their_deployment(processes, tmp_path):
    now = int(time.time())
    tsdb = tmp_path / "prom-data"
    backfill(history(now), tmp_path / "history.om", tsdb)

    reader, process = start_prometheus(processes, tmp_path, tsdb, [], "prometheus-history")
    seed = subprocess.run([sys.executable, str(REPO / "prometheus" / "seed.py"), "--prometheus.url", reader],
                          check=True, capture_output=True, text=True, timeout=120).stdout
    process.terminate()
    process.wait(30)
    assert 'budget_period:mlcost_budget_spend_usd:period_to_date_hourly{budget="b",period="p"}' in seed
    backfill(seed, tmp_path / "seed.om", tsdb)

    url, _ = start_prometheus(processes, tmp_path, tsdb, derived_rules(tmp_path), "prometheus-rules")
    # $288 + $288: without the seed the rules would start from the counters seen in the last day ($288).
    assert wait_until(lambda: period_to_date(url) == 576.0, timeout=120, interval=0.5,
                      what="period-to-date counting the pod that ended three days ago")
