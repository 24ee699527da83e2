"""The same rule files in real Prometheus and in real vmalert + VictoriaMetrics, over the same history.

Thirty hours of one budget's counters, ending now, are backfilled into Prometheus (promtool) and imported
into VictoriaMetrics; then both scrape the same counters live from a server in the test. Both evaluate the
project's rule files every 5 s (the hourly groups too: they take every value at the last whole hour, so
evaluating them more often changes nothing) with `for` set to 0. Period-to-date, the hourly snapshot and
checkpoint, burn rates and firing alerts must agree between the engines and with the counters' truth.
Needs the Debian package victoria-metrics (vmalert ships in it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port, wait_until
from tests.support.http import Reply, Request

pytestmark = pytest.mark.vmalert

STEP = 60  # seconds between samples, 1 s in the last FINE seconds (so that raw windows of up to an hour hold
FINE = 70 * 60  # evenly spaced samples, as scraping at 1 s: Prometheus' rate() extrapolates across uneven ones)
HOURS = 30
LIMIT = 100.0
# (pod, $ per hour, first and last sample relative to the history's end in hours, scrape gap in hours)
PODS = (("pod-a", 3.6, -30, 0, (-20, -18)), ("pod-b", 1.2, -30, -5, None), ("pod-c", 7.2, -2, 0, None))
COMPARED = ("budget:mlcost_budget_spend_usd:period_to_date", "budget:mlcost_budget_burn:ratio_rate5m",
            "budget:mlcost_budget_burn:ratio_rate1h", "budget_period:mlcost_budget_spend_usd:period_to_date_hourly",
            "series:mlcost_budget_spend_usd:at_hour")


def pod_samples(end: int, pod: str, hourly: float, first: int, t: int) -> list[tuple[str, dict, float, int]]:
    """One pod's series at `t`: a counter that keeps counting through scrape gaps, and the budget's gauges."""
    base = {"budget": "alpha", "instance": pod, "job": "mlcost"}
    spent = hourly * (t - (end + first * 3600)) / 3600
    return [
        ("mlcost_budget_spend_usd_total", {**base, "period": "run"}, spent, t),
        ("mlcost_budget_current_period_info", {**base, "period": "run"}, 1, t),
        ("mlcost_budget_limit_usd", base, LIMIT, t),
        ("mlcost_budget_period_start_timestamp_seconds", base, end - 2 * 86400, t),
        ("mlcost_budget_period_end_timestamp_seconds", base, end + 5 * 86400, t),
        ("mlcost_budget_alert_threshold_ratio", {**base, "threshold": "0.9"}, 0.9, t),
        ("mlcost_budget_alert_threshold_ratio", {**base, "threshold": "1"}, 1, t),
    ]


def sample_times(end: int, first: int, last: int, gap) -> list[int]:
    """When a pod (alive from `first` to `last` hours relative to `end`) was scraped."""
    coarse = range(end + first * 3600, end - FINE, STEP)
    fine = range(max(end - FINE, end + first * 3600), end + 1)
    return [t for t in (*coarse, *fine) if t <= end + last * 3600
            and not (gap and end + gap[0] * 3600 <= t < end + gap[1] * 3600)]


def history(end: int) -> list[tuple[str, dict[str, str], float, int]]:
    """(metric, labels, value, unix seconds) of every sample up to `end`."""
    return [sample for pod, hourly, first, last, gap in PODS for t in sample_times(end, first, last, gap)
            for sample in pod_samples(end, pod, hourly, first, t)]


class LivePods:
    """Serves the pods still running after `end` as /metrics, their counters following the wall clock."""

    def __init__(self, end: int, loopback_server) -> None:
        self.end = end
        live = [pod for pod in PODS if pod[3] == 0]

        def answer(_: Request) -> Reply:
            now = int(time.time())
            rows = [s for pod, hourly, first, _, _ in live for s in pod_samples(end, pod, hourly, first, now)]
            return Reply(body="\n".join(line(m, labels, v, "") for m, labels, v, _ in rows).encode() + b"\n")

        self.target = f"127.0.0.1:{loopback_server(answer).port}"

    def scrape_config(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({"scrape_configs": [{
            "job_name": "mlcost", "scrape_interval": "1s", "honor_labels": True,
            "static_configs": [{"targets": [self.target]}]}]}))
        return path


@pytest.fixture
def live_pods(loopback_server):
    return LivePods(int(time.time()) - 1, loopback_server)


def line(metric: str, labels: dict[str, str], value: float, timestamp: str) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{body}}} {value!r} {timestamp}".rstrip()


def openmetrics(samples) -> str:
    by_metric: dict[str, list[str]] = {}
    for metric, labels, value, t in sorted(samples, key=lambda s: (s[0], s[3])):
        by_metric.setdefault(metric, []).append(line(metric, labels, value, str(t)))
    out = []
    for metric, lines in by_metric.items():
        family = metric.removesuffix("_total")
        out += [f"# TYPE {family} {'counter' if metric.endswith('_total') else 'gauge'}", *lines]
    return "\n".join([*out, "# EOF"]) + "\n"


def spent(end: int, at: float) -> float:
    """The counters' period-to-date at `at`: every pod's last sample by then (live pods: the wall clock)."""
    total = 0.0
    for _, hourly, first, last, gap in PODS:
        start = end + first * 3600
        if last == 0 and at > end:
            total += hourly * (at - start) / 3600
            continue
        seen = [t for t in sample_times(end, first, last, gap) if t <= at]
        total += hourly * (seen[-1] - start) / 3600 if seen else 0.0
    return total


def derived_rules(tmp_path: Path) -> list[Path]:
    """The project's rule files with every group evaluated every 5 s and every `for` at 0."""
    out = []
    for path in sorted((REPO / "prometheus" / "rules").glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"
        copy = tmp_path / "rules" / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(copy)
    return out


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required (Debian packages prometheus and victoria-metrics)"
    return path


def start_prometheus(processes, tmp_path: Path, samples, rules: list[Path], scrape: Path) -> str:
    source, tsdb = tmp_path / "history.om", tmp_path / "prom-data"
    source.write_text(openmetrics(samples))
    subprocess.run([tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
                   check=True, capture_output=True, timeout=300)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": "5s"}, "rule_files": list(map(str, rules)),
                                      **yaml.safe_load(scrape.read_text())}))
    port = free_port()
    processes.start("prometheus", [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                                   "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, timeout=60, what="Prometheus")
    return url


def start_victoria_metrics(processes, tmp_path: Path, samples, rules: list[Path], scrape: Path) -> tuple[str, str]:
    """VictoriaMetrics with the history imported, and vmalert reading and writing it (docs/rules.md flags)."""
    vm_port, vmalert_port = free_port(), free_port()
    processes.start("victoria-metrics", [
        tool("victoria-metrics"), f"-storageDataPath={tmp_path / 'vm-data'}", "-retentionPeriod=100y",
        f"-httpListenAddr=127.0.0.1:{vm_port}", f"-promscrape.config={scrape}", "-search.disableCache"])
    vm = f"http://127.0.0.1:{vm_port}"
    wait_until(lambda: requests.get(f"{vm}/health", timeout=1).ok, timeout=60, what="VictoriaMetrics")
    body = "\n".join(line(m, labels, v, str(t * 1000)) for m, labels, v, t in samples) + "\n"
    requests.post(f"{vm}/api/v1/import/prometheus", data=body.encode(), timeout=120).raise_for_status()
    requests.get(f"{vm}/internal/force_flush", timeout=60).raise_for_status()
    processes.start("vmalert", [
        tool("vmalert"), *(f"-rule={path}" for path in rules), f"-datasource.url={vm}", f"-remoteWrite.url={vm}",
        f"-notifier.url=http://127.0.0.1:{free_port()}", "-evaluationInterval=5s",
        f"-httpListenAddr=127.0.0.1:{vmalert_port}"])
    vmalert = f"http://127.0.0.1:{vmalert_port}"
    wait_until(lambda: requests.get(f"{vmalert}/health", timeout=1).ok, timeout=60, what="vmalert")
    return vm, vmalert


def values(url: str, expr: str) -> dict[tuple, float]:
    result = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"]
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
            for r in result}


def firing(url: str) -> set[tuple]:
    alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("threshold", ""), a["labels"]["severity"])
            for a in alerts if a["state"] == "firing"}


def close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b), 1e-12)


def test_prometheus_and_vmalert_agree_on_the_rules_over_the_same_history(processes, tmp_path, live_pods):
    end = live_pods.end
    samples = history(end)
    rules = derived_rules(tmp_path)
    scrape = live_pods.scrape_config(tmp_path / "scrape.yml")
    prometheus = start_prometheus(processes, tmp_path, samples, rules, scrape)
    vm, vmalert = start_victoria_metrics(processes, tmp_path, samples, rules, scrape)

    def settled(url: str, tolerance: float) -> dict | None:
        """Every compared series, once the period-to-date counts the checkpoint (read a minute late)."""
        now = time.time()
        got = {expr: values(url, expr) for expr in COMPARED}
        ptd = got[COMPARED[0]]
        return got if ptd and close(next(iter(ptd.values())), spent(end, now), tolerance) else None

    # vmalert's recordings become visible 30 s after they are written (VictoriaMetrics'
    # -search.latencyOffset), once per level of recording: its period-to-date lags by a minute or so.
    wait_until(lambda: settled(prometheus, 0.001) and settled(vm, 0.005), timeout=240, interval=1,
               what="the period-to-date to count the hourly checkpoint in both")
    in_prometheus, in_vm = settled(prometheus, 0.001), settled(vm, 0.005)
    assert in_prometheus and in_vm
    for expr in COMPARED:
        assert in_prometheus[expr].keys() == in_vm[expr].keys(), expr
        for labels, value in in_prometheus[expr].items():
            assert close(value, in_vm[expr][labels], 0.005), (expr, labels, value, in_vm[expr][labels])
    (checkpoint,) = in_prometheus["budget_period:mlcost_budget_spend_usd:period_to_date_hourly"].values()
    hour = int(time.time()) // 3600 * 3600
    assert close(checkpoint, spent(end, hour), 0.001), (checkpoint, spent(end, hour))
    # 3.6 + 7.2 $/h against $100 over 7 days.
    (burn,) = in_prometheus["budget:mlcost_budget_burn:ratio_rate1h"].values()
    assert close(burn, 10.8 / (LIMIT / (7 * 24)), 0.001)

    expected = {("MLCostBudgetBurnFast", "", "critical"), ("MLCostBudgetThresholdReached", "0.9", "warning"),
                ("MLCostBudgetThresholdReached", "1", "critical"), ("MLCostBudgetForecastExceeded", "", "warning"),
                ("Watchdog", "", "info")}
    assert wait_until(lambda: firing(prometheus) == expected and firing(vmalert) == expected, timeout=60,
                      interval=1, what="the same alerts firing in both")
