"""Samples read and evaluation time of every budget recording rule, old (bench/baseline/) against new.

A synthetic month (January 2025) for N pods and 3 budgets, backfilled with `promtool tsdb
create-blocks-from openmetrics`: pods are replaced every day, each pod's exporter restarts once in its
life (counter reset), and every pod misses 40 minutes of scrapes on day 10. Scrape and evaluation
interval are 5 minutes (a 15 s scrape is 20x the raw samples; the old/new ratio only grows with it).
The new rules' recorded period-to-date (and its hourly copy) is backfilled as the chain computes it:
each series' growth, resets adding the new life's value. A real Prometheus opens the TSDB; every rule
expression is queried at the month's last evaluation with stats=all (totalQueryableSamples,
evalTotalTime).

Run: .venv/bin/python -m bench.bench_rules [--pods 100 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from harness.net import free_port

REPO = Path(__file__).resolve().parents[1]
START = 1735689600  # 2025-01-01T00:00:00Z
DAYS = 31
STEP = 300  # scrape and evaluation interval of the synthetic data, seconds
END = START + DAYS * 86400 - STEP  # the month's last evaluation
BUDGETS = ("alpha", "beta", "gamma")
HOURLY_USD = 3.6  # each pod's price per hour
GAP = (START + 9 * 86400 + 3600 * 12, START + 9 * 86400 + 3600 * 12 + 2400)  # day 10, 40 minutes


def pod_samples(n_pods: int) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Each (budget, pod) spend series: one pod per slot per day, an exporter restart mid-life."""
    series = {}
    for day in range(DAYS):
        born = START + day * 86400
        for slot in range(n_pods):
            budget = BUDGETS[slot % len(BUDGETS)]
            rate = HOURLY_USD * (1 + (slot % 7) / 10) / 3600
            restart = born + 3600 * (6 + slot % 12) + 150
            samples, value, last = [], 0.0, born
            for t in range(born + STEP, born + 86400 + 1, STEP):
                if t >= restart > last:
                    value, last = 0.0, restart
                value += rate * (t - last)
                last = t
                if not GAP[0] <= t < GAP[1]:
                    samples.append((t, value))
            series[(budget, f"pod-{day}-{slot}")] = samples
    return series


def openmetrics(series: dict[tuple[str, str], list[tuple[int, float]]]) -> str:
    lines = ["# TYPE mlcost_budget_spend_usd counter"]
    for (budget, pod), samples in series.items():
        for t, value in samples:
            lines.append(f'mlcost_budget_spend_usd_total{{budget="{budget}",period="2025-01",pod="{pod}"}} '
                         f"{value:.9f} {t}")
    lines.append("# TYPE mlcost_budget_current_period_info gauge")
    for budget in BUDGETS:
        for t in range(START, END + 1, STEP):
            lines.append(f'mlcost_budget_current_period_info{{budget="{budget}",period="2025-01"}} 1 {t}')
    lines.append("# TYPE budget_period:mlcost_budget_spend_usd:period_to_date gauge")
    for budget, points in recorded_period_to_date(series).items():
        for t, value in points:
            lines.append(f'budget_period:mlcost_budget_spend_usd:period_to_date{{budget="{budget}",period="2025-01"}} '
                         f"{value:.9f} {t}")
    lines.append("# TYPE budget_period:mlcost_budget_spend_usd:period_to_date_hourly gauge")
    for budget, points in recorded_period_to_date(series).items():
        for t, value in points:
            if (t - START) % 3600 == 0:
                lines.append(f'budget_period:mlcost_budget_spend_usd:period_to_date_hourly{{budget="{budget}",'
                             f'period="2025-01"}} {value:.9f} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def recorded_period_to_date(series) -> dict[str, list[tuple[int, float]]]:
    """The recorded chain through the month: the sum of each series' growth up to t (resets add
    the new life's value), which is what the rule accumulates hour by hour."""
    totals: dict[str, dict[int, float]] = {b: {} for b in BUDGETS}
    for (budget, _), samples in series.items():
        grown, previous = 0.0, 0.0
        points = iter(samples)
        current = next(points, None)
        for t in range(START + STEP, END + 1, STEP):
            while current is not None and current[0] <= t:
                grown += current[1] - previous if current[1] >= previous else current[1]
                previous = current[1]
                current = next(points, None)
            totals[budget][t] = totals[budget].get(t, 0.0) + grown
    return {b: sorted(points.items()) for b, points in totals.items()}


def query(port: int, expr: str) -> tuple[int, float, float | None]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": END, "stats": "all"})
    with urllib.request.urlopen(url, timeout=600) as response:
        data = json.load(response)["data"]
    stats = data["stats"]
    values = [float(r["value"][1]) for r in data["result"]]
    return stats["samples"]["totalQueryableSamples"], stats["timings"]["evalTotalTime"], \
        (sum(values) if values else None)


def recording_rules(path: Path) -> list[tuple[str, str]]:
    return [(r["record"], r["expr"]) for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]
            if "record" in r]


def measure(n_pods: int) -> dict[str, dict[str, tuple]]:
    work = Path(tempfile.mkdtemp(prefix="mlcost-bench-rules-"))
    try:
        source = work / "data.om"
        source.write_text(openmetrics(pod_samples(n_pods)))
        tsdb = work / "tsdb"
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
                       check=True, capture_output=True)
        source.unlink()
        port = free_port()
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={REPO / 'bench' / 'baseline' / 'empty.yml'}",
             f"--storage.tsdb.path={tsdb}", "--storage.tsdb.retention.time=100y",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "prometheus did not get ready"
                    time.sleep(0.2)
            results = {}
            for label, path in (("old", REPO / "bench" / "baseline" / "mlcost-budget.rules.yml"),
                                ("new", REPO / "prometheus" / "rules" / "mlcost-budget.rules.yml")):
                results[label] = {name: query(port, expr) for name, expr in recording_rules(path)}
            # The chain's value at the month's end, with the hour's increase computed from the raw series
            # (the recorded inputs of the last evaluation are not backfilled).
            rules = dict(recording_rules(REPO / "prometheus" / "rules" / "mlcost-budget.rules.yml"))
            chain = rules["budget_period:mlcost_budget_spend_usd:period_to_date"]
            for name in ("budget_period:mlcost_budget_spend_usd:increase1h",
                         "budget_period:mlcost_budget_spend_usd:last1h"):
                chain = chain.replace(name, f"({rules[name]})")
            results["new_value"] = query(port, chain)[2]
            return results
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[100, 200])
    args = parser.parse_args()
    runs = {n: measure(n) for n in args.pods}
    names = sorted({name for run in runs.values() for side in (run["old"], run["new"]) for name in side})
    print(f"{'recording rule':58} " + " ".join(f"{'N=' + str(n) + ' old/new samples':>30} {'ms old/new':>13}"
                                              for n in args.pods))
    for name in names:
        cells = []
        for n in args.pods:
            old = runs[n]["old"].get(name)
            new = runs[n]["new"].get(name)
            samples = f"{old[0] if old else '-':>13}/{new[0] if new else '-':<13}"
            times = f"{old[1] * 1000 if old else 0:6.1f}/{new[1] * 1000 if new else 0:<6.1f}"
            cells.append(f"{samples:>30} {times:>13}")
        print(f"{name:58} " + " ".join(cells))
    chain = ("budget_period:mlcost_budget_spend_usd:period_to_date", "budget:mlcost_budget_spend_usd:period_to_date")
    for n in args.pods:
        old, new = runs[n]["old"], runs[n]["new"]
        old_ptd = old["budget:mlcost_budget_spend_usd:period_to_date"]
        new_samples = sum(new[name][0] for name in chain)
        new_value = runs[n]["new_value"]
        print(f"N={n} period-to-date: old {old_ptd[0]} samples, new {new_samples} ({old_ptd[0] / new_samples:.0f}x "
              f"fewer); value old {old_ptd[2]:.4f} new {new_value:.4f} "
              f"({(new_value - old_ptd[2]) / old_ptd[2] * 100:+.4f} %)")
        for name in ("budget:mlcost_budget_spend_usd:rate1d", "budget:mlcost_budget_spend_usd:rate3d"):
            print(f"N={n} {name}: {old[name][0] / new[name][0]:.0f}x fewer samples; value old {old[name][2]:.6f} "
                  f"new {new[name][2]:.6f} ({(new[name][2] - old[name][2]) / old[name][2] * 100:+.3f} %)")

if __name__ == "__main__":
    main()
