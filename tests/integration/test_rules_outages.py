"""Prometheus outages in real Prometheus: no scrape and no rule evaluation for a while, then both resume.

promtool keeps evaluating rules through a gap in its input series, so it cannot show a ruler outage. Here two
real Prometheus servers evaluate the budget rules with every duration divided by 60 (an hour is a minute, a
minute a second: scrape and evaluation every second, lookback 5 s, the hourly group every minute) while a
server in the test serves three pods' spend counters that follow the wall clock. Both are frozen (SIGSTOP)
at the same moment, one pod ends while they are, and they resume (SIGCONT) after a 90-minute outage and
after a 4 h 10 min one. Period-to-date must never decrease; after the short outage it takes the counters'
growth through it at once (less the spend of the pod that ended during it since its snapshot in use, which
the hourly run adds); after the long one it holds its pre-outage value until the hourly run (or is exact at
once if that run came first); after that run both equal the counters' last values exactly. About 7 minutes.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port, wait_until
from tests.support.binaries import tool
from tests.support.http import Reply

pytestmark = pytest.mark.outage

SCALE = 60  # an hour of production time is a minute here
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"(\d+)(ms|s|m|h|d)\b")
PTD = "budget_period:mlcost_budget_spend_usd:period_to_date"
TRUTH = "sum by (budget, period) (last_over_time(mlcost_budget_spend_usd_total[1h]))"
# (pod, $ per second, born and ended in seconds after the start; None: runs on)
PODS = (("pod-a", 1.0, 0, None), ("pod-b", 2.0, 0, 150), ("pod-c", 3.0, 60, None))
PAUSE_AT, SHORT, LONG = 130, 90, 250  # seconds after the start; outage lengths (90 min, 4 h 10 min)


def compressed(duration: str) -> str:
    """A PromQL or config duration divided by SCALE (1ms stays: it only orders two samples)."""
    def scale(match: re.Match) -> str:
        seconds = int(match.group(1)) * UNITS[match.group(2)]
        if match.group(2) == "ms":
            return match.group(0)
        scaled = seconds / SCALE
        return f"{int(scaled)}s" if scaled == int(scaled) else f"{int(scaled * 1000)}ms"
    return DURATION.sub(scale, duration)


def compressed_rules(path: Path) -> Path:
    rules = yaml.safe_load((REPO / "prometheus" / "rules" / "mlcost-budget.rules.yml").read_text())
    for group in rules["groups"]:
        if "interval" in group:
            group["interval"] = compressed(group["interval"])
        for rule in group["rules"]:
            rule["expr"] = re.sub(r"\[[^\]]+\]|offset \d+\w+", lambda m: compressed(m.group(0)), rule["expr"])
            rule.pop("for", None)
    path.write_text(yaml.safe_dump(rules))
    return path


def exposition(start: float) -> bytes:
    """The pods' counters as /metrics: each pod's spend since it was born, while it lives."""
    now = time.time() - start
    lines = ["# TYPE mlcost_budget_spend_usd counter", "# TYPE mlcost_budget_current_period_info gauge"]
    for pod, rate, born, ended in PODS:
        if born <= now and (ended is None or now < ended):
            labels = f'budget="b",period="run",instance="{pod}"'
            lines.append(f"mlcost_budget_spend_usd_total{{{labels}}} {rate * (now - born)!r}")
            lines.append(f"mlcost_budget_current_period_info{{{labels}}} 1")
    return ("\n".join(lines) + "\n").encode()


def start_prometheus(processes, directory: Path, target: str) -> tuple[str, int]:
    directory.mkdir()
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(compressed_rules(directory / "budget.rules.yml"))],
        "scrape_configs": [{"job_name": "mlcost", "honor_labels": True, "static_configs": [{"targets": [target]}]}],
    }))
    port = free_port()
    process = processes.start(directory.name, [
        tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--query.lookback-delta=5s"])
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="Prometheus")
    return url, process.pid


def samples(url: str, expr: str, at: float) -> list[tuple[float, float]]:
    """Every sample of a recorded series up to `at` (its single series)."""
    result = requests.get(f"{url}/api/v1/query", params={"query": f"{expr}[1h]", "time": at}, timeout=10).json()
    (series,) = result["data"]["result"]
    return [(float(t), float(v)) for t, v in series["values"]]


def value_at(url: str, expr: str, at: float) -> float | None:
    result = requests.get(f"{url}/api/v1/query", params={"query": expr, "time": at}, timeout=10).json()
    values = [float(r["value"][1]) for r in result["data"]["result"]]
    return values[0] if values else None


def exact_after(url: str, resumed: float) -> float | None:
    """The time of the first evaluation after `resumed` whose period-to-date equals the counters' last values
    at that same instant (they read the same samples), or None."""
    for t, value in samples(url, PTD, time.time()):
        truth = value_at(url, TRUTH, t)
        if t > resumed and truth and abs(value - truth) <= 1e-9 * truth:
            return t
    return None


def test_period_to_date_through_prometheus_outages_of_90_minutes_and_4_hours(processes, tmp_path, loopback_server):
    start = time.time()
    pods = f"127.0.0.1:{loopback_server(lambda _: Reply(body=exposition(start))).port}"
    short_url, short_pid = start_prometheus(processes, tmp_path / "prometheus-short", pods)
    long_url, long_pid = start_prometheus(processes, tmp_path / "prometheus-long", pods)
    # Both have an hourly checkpoint before the outage.
    for url in (short_url, long_url):
        assert wait_until(lambda url=url: value_at(url, "budget_period:mlcost_budget_spend_usd:period_to_date_hourly",
                                                   time.time()), timeout=PAUSE_AT, interval=1,
                          what="an hourly checkpoint")
    time.sleep(max(0.0, start + PAUSE_AT - time.time()))  # the outage starts at a set time: pod-b ends inside it
    for pid in (short_pid, long_pid):
        os.kill(pid, signal.SIGSTOP)
    paused = time.time()
    try:
        time.sleep(max(0.0, start + PAUSE_AT + SHORT - time.time()))
    finally:
        os.kill(short_pid, signal.SIGCONT)
    short_resumed = time.time()
    try:
        time.sleep(max(0.0, start + PAUSE_AT + LONG - time.time()))
    finally:
        os.kill(long_pid, signal.SIGCONT)
    long_resumed = time.time()

    # Each: exact from an evaluation within the hour after it resumed (the hourly run and its 1 s offset).
    for url, resumed in ((short_url, short_resumed), (long_url, long_resumed)):
        assert wait_until(lambda url=url, resumed=resumed: exact_after(url, resumed), timeout=SCALE + 30,
                          interval=2, what="period-to-date equal to the counters after the outage")

    before = {url: [v for t, v in samples(url, PTD, paused)][-1] for url in (short_url, long_url)}
    for url, resumed in ((short_url, short_resumed), (long_url, long_resumed)):
        series = samples(url, PTD, time.time())
        # Never decreases, over the whole run.
        decreases = [(t, v, w) for (t, v), (_, w) in itertools.pairwise(series) if w < v]
        assert not decreases, decreases[:3]
        first_after = next((t, v) for t, v in series if t > resumed)
        truth = value_at(url, TRUTH, first_after[0])
        if url == short_url:
            # The live pods' growth through the outage ($4 a second) is there at once; what can be missing
            # is pod-b's spend since its snapshot in use (at most two hours before the outage, as the hourly
            # group runs at some minute of the hour: $240), which the hourly run adds (it may have run
            # already: both groups catch up at once when Prometheus resumes).
            missing_at_most = 2.0 * 2 * SCALE
            assert truth - missing_at_most <= first_after[1] <= truth, (first_after, truth, before[url])
            assert first_after[1] >= before[url] + 4.0 * SHORT - missing_at_most, (first_after, before[url])
        else:
            # No snapshot within 4 hours: the value holds its pre-outage level until the hourly run, unless
            # that run came first (Prometheus runs a group that missed evaluations as soon as it resumes,
            # stamped at its latest scheduled time): then it is already exact.
            assert first_after[1] == before[url] or abs(first_after[1] - truth) <= 1e-9 * truth, (
                first_after, before[url], truth)
    assert exact_after(long_url, long_resumed) - long_resumed <= SCALE + 5
