"""Samples read and evaluation time of every budget recording rule, old (bench/baseline/) against new.

A synthetic month (January 2025) for N pods and 3 budgets, backfilled with `promtool tsdb
create-blocks-from openmetrics`: pods are replaced every day, each pod's exporter restarts once in its
life (counter reset), and every pod misses 40 minutes of scrapes on day 10. With --gap, Prometheus is
also down for the 24 hours before the month's last evaluation (no scrape, no recording). Scrape and
evaluation interval are 5 minutes (a 15 s scrape is 20x the raw samples; the old/new ratio only grows
with it). The new rules' recordings are backfilled as they compute them: the per-evaluation
period-to-date, the hourly checkpoint and each series' hourly snapshot (each series' growth, resets
adding the new life's value). A real Prometheus opens the TSDB; every rule expression is queried at the
month's last evaluation with stats=all (totalQueryableSamples, evalTotalTime), and the new
period-to-date is compared with the counters' truth.

Run: .venv/bin/python -m bench.bench_rules [--pods 100 200] [--gap] [--new-only | --baseline RULES]
"""

from __future__ import annotations

import argparse
import itertools
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
OUTAGE = (END - 86400, END)  # with --gap: Prometheus down for the 24 hours before the last evaluation


def pod_samples(n_pods: int, outage: bool = False) -> dict[tuple[str, str], list[tuple[int, float]]]:
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
                if not GAP[0] <= t < GAP[1] and not (outage and OUTAGE[0] <= t < OUTAGE[1]):
                    samples.append((t, value))
            series[(budget, f"pod-{day}-{slot}")] = samples
    return series


def openmetrics(series: dict[tuple[str, str], list[tuple[int, float]]], outage: bool) -> str:
    def down(t: int) -> bool:
        return outage and OUTAGE[0] <= t < OUTAGE[1]

    lines = ["# TYPE mlcost_budget_spend_usd counter"]
    for (budget, pod), samples in series.items():
        for t, value in samples:
            lines.append(f'mlcost_budget_spend_usd_total{{budget="{budget}",period="2025-01",pod="{pod}"}} '
                         f"{value:.9f} {t}")
    lines.append("# TYPE mlcost_budget_current_period_info gauge")
    for budget in BUDGETS:
        for t in range(START, END + 1, STEP):
            if not down(t):
                lines.append(f'mlcost_budget_current_period_info{{budget="{budget}",period="2025-01"}} 1 {t}')
    chain = recorded_period_to_date(series)
    lines.append("# TYPE budget_period:mlcost_budget_spend_usd:period_to_date gauge")
    for budget, points in chain.items():
        for t, value in points:
            if not down(t) and t < END:
                lines.append(f'budget_period:mlcost_budget_spend_usd:period_to_date{{budget="{budget}",'
                             f'period="2025-01"}} {value:.9f} {t}')
    lines.append("# TYPE budget_period:mlcost_budget_spend_usd:period_to_date_hourly gauge")
    for budget, points in chain.items():
        for t, value in points:
            if (t - START) % 3600 == 0 and not down(t) and t < END:
                lines.append(f'budget_period:mlcost_budget_spend_usd:period_to_date_hourly{{budget="{budget}",'
                             f'period="2025-01"}} {value:.9f} {t}')
    lines.append("# TYPE series:mlcost_budget_spend_usd:at_hour gauge")
    for (budget, pod), samples in series.items():
        for t, value in hourly_snapshots(samples):
            if not down(t) and t < END:
                lines.append(f'series:mlcost_budget_spend_usd:at_hour{{budget="{budget}",period="2025-01",'
                             f'pod="{pod}"}} {value:.9f} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def hourly_snapshots(samples: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """A series' value at each whole hour: its latest sample within the 26 hours before it."""
    out, index = [], 0
    for hour in range(START, END + 1, 3600):
        while index < len(samples) and samples[index][0] <= hour:
            index += 1
        if index and hour - samples[index - 1][0] <= 26 * 3600:
            out.append((hour, samples[index - 1][1]))
    return out


def truth(series) -> dict[str, float]:
    """Each budget's true period-to-date at the last evaluation: every life of every counter."""
    return {budget: points[-1][1] for budget, points in recorded_period_to_date(series).items()}


def growth(value: float, previous: float) -> float:
    """A counter's growth from one sample to the next: a reset adds the new life's value."""
    return value - previous if value >= previous else value


def spent_until(samples: list[tuple[int, float]], until: int) -> float:
    """One series' growth in its samples up to `until`."""
    values = [0.0] + [value for t, value in samples if t <= until]
    return sum(growth(value, previous) for previous, value in itertools.pairwise(values))


def recorded_period_to_date(series) -> dict[str, list[tuple[int, float]]]:
    """The recorded chain through the month: the sum of each series' growth up to t (resets add
    the new life's value), which is what the rules record."""
    totals: dict[str, dict[int, float]] = {b: {} for b in BUDGETS}
    for (budget, _), samples in series.items():
        grown, previous = 0.0, 0.0
        points = iter(samples)
        current = next(points, None)
        for t in range(START + STEP, END + 1, STEP):
            while current is not None and current[0] <= t:
                grown += growth(current[1], previous)
                previous = current[1]
                current = next(points, None)
            totals[budget][t] = totals[budget].get(t, 0.0) + grown
    return {b: sorted(points.items()) for b, points in totals.items()}


def query(port: int, expr: str, at: int = END) -> tuple[int, float, float | None]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": at, "stats": "all"})
    with urllib.request.urlopen(url, timeout=600) as response:
        data = json.load(response)["data"]
    stats = data["stats"]
    values = [float(r["value"][1]) for r in data["result"]]
    return stats["samples"]["totalQueryableSamples"], stats["timings"]["evalTotalTime"], \
        (sum(values) if values else None)


def recording_rules(path: Path) -> list[tuple[str, str]]:
    return [(r["record"], r["expr"]) for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]
            if "record" in r]


def measure(n_pods: int, outage: bool, baseline: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mlcost-bench-rules-"))
    try:
        series = pod_samples(n_pods, outage)
        source = work / "data.om"
        source.write_text(openmetrics(series, outage))
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
            sides = [("new", REPO / "prometheus" / "rules" / "mlcost-budget.rules.yml")]
            if baseline:
                sides.append(("old", baseline))
            results = {label: {name: query(port, expr) for name, expr in recording_rules(path)}
                       for label, path in sides}
            results["truth"] = sum(truth(series).values())
            # What the next hourly run records: the checkpoint at the next whole hour, from the samples up to END.
            new_rules = dict(recording_rules(sides[0][1]))
            checkpoint = new_rules["budget_period:mlcost_budget_spend_usd:period_to_date_hourly"]
            results["next_hourly"] = query(port, checkpoint, at=END + STEP + 1)[2]
            results["truth_next_hour"] = sum(spent_until(samples, END + STEP) for samples in series.values())
            return results
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--gap", action="store_true", help="Prometheus down for the last 24 hours")
    parser.add_argument("--baseline", type=Path, default=REPO / "bench" / "baseline" / "mlcost-budget.rules.yml",
                        help="the rules to compare with (default: the rules before the fleet-scale rework)")
    parser.add_argument("--new-only", action="store_true", help="measure the new rules alone")
    args = parser.parse_args()
    runs = {n: measure(n, args.gap, None if args.new_only else args.baseline) for n in args.pods}
    names = sorted({name for run in runs.values() for side in ("old", "new") for name in run.get(side, {})})
    print(f"{'recording rule':58} " + " ".join(f"{'N=' + str(n) + ' old/new samples':>30} {'ms old/new':>13}"
                                              for n in args.pods))
    for name in names:
        cells = []
        for n in args.pods:
            old = runs[n].get("old", {}).get(name)
            new = runs[n]["new"].get(name)
            samples = f"{old[0] if old else '-':>13}/{new[0] if new else '-':<13}"
            times = f"{old[1] * 1000 if old else 0:6.1f}/{new[1] * 1000 if new else 0:<6.1f}"
            cells.append(f"{samples:>30} {times:>13}")
        print(f"{name:58} " + " ".join(cells))
    chain = ("series:mlcost_budget_spend_usd:stopped", "budget_period:mlcost_budget_spend_usd:period_to_date",
             "budget:mlcost_budget_spend_usd:period_to_date")
    for n in args.pods:
        new = runs[n]["new"]
        new_samples = sum(new[name][0] for name in chain if name in new)
        value, true = new["budget_period:mlcost_budget_spend_usd:period_to_date"][2], runs[n]["truth"]
        print(f"N={n}{' gap' if args.gap else ''} period-to-date: new {new_samples} samples; value {value:.4f} "
              f"vs the counters' truth {true:.4f} ({(value - true) / true * 100:+.4f} %)")
        hourly, next_true = runs[n]["next_hourly"], runs[n]["truth_next_hour"]
        print(f"N={n}{' gap' if args.gap else ''} the next hourly run's checkpoint: {hourly:.4f} vs the counters "
              f"at that hour {next_true:.4f} ({(hourly - next_true) / next_true * 100:+.4f} %)")
        if "old" in runs[n]:
            old_chain = sum(runs[n]["old"][name][0] for name in chain if name in runs[n]["old"])
            print(f"N={n} baseline rules: {old_chain} samples ({old_chain / new_samples:.1f}x the new)")


if __name__ == "__main__":
    main()
