"""`mlcost report --since 30d` for 200 models over a backfilled month: wall time and Prometheus queries.

The baseline, in the same run against the same Prometheus, is the same report read from the raw
counters (`--data raw`); ours reads the model:*:increase1h recordings. History: 30 days at a 1 h step
(Prometheus runs with a 1 h lookback), 203 models, built with promtool like the tests' history.

With --accuracy: the tests' month of raw counters, its hourly recordings made by the project's own rules
(`promtool tsdb create-blocks-from rules`, at the group's evaluation offset), and every report figure on the whole month
and on 12-hour windows, raw and recorded, against the known truth; recommend's planted findings found;
estimate --like against the true cost per 1k and per epoch.
"""

from __future__ import annotations

import argparse
import json
import shutil
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


HOURLY_RULE_FILES = ("mlcost-model.rules.yml", "mlcost-tokens.rules.yml")
FIGURES = ("cost_usd", "requests", "idle_usd", "cost_per_1k_usd")
ACCURACY_WINDOWS = (("28d", "2026-04-01T00:00:00Z"), ("12h", "2026-03-21T12:00:00Z"), ("12h", "2026-03-28T12:00:00Z"))
PLANTED = {("idle-replicas", "chat v2"), ("scale-to-zero", "embed v3"), ("smaller-gpu", "embed"),
           ("commitment", "aws a100-80gb"), ("spot", "trainer v1"), ("version-regression", "chat v2"),
           ("above-target", "chat v2")}


def _hourly_rules(directory: Path) -> Path:
    """The project's hourly rule groups (interval 1h) alone, so promtool evaluates only them, once an hour."""
    import yaml

    groups = []
    for name in HOURLY_RULE_FILES:
        groups += [g for g in yaml.safe_load((REPO / "prometheus" / "rules" / name).read_text())["groups"]
                   if g.get("interval") == "1h"]
    path = directory / "hourly.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def _start_prometheus(root: Path, data: Path) -> tuple[subprocess.Popen, str]:
    (root / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    process = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=50y",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 120, what="Prometheus")
    return process, url


def _mlcost(url: str, *argv: str) -> dict:
    script = Path(sys.executable).with_name("mlcost")
    result = subprocess.run([str(script), *argv, "--format", "json", "--prometheus.url", url], capture_output=True,
                            text=True)
    return json.loads(result.stdout) if result.stdout else {"error": result.stderr.strip()}


def _deviation(measured: float | None, true: float | None) -> str:
    if measured is None or true is None:
        return "n/a" if measured == true else f"{measured} vs {true}"
    return f"{(measured - true) / true * 100:+.3f}%"


def _report_accuracy(url: str) -> None:
    for since, until in ACCURACY_WINDOWS:
        end = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp()
        seconds = {"28d": 28 * 86400, "12h": 12 * 3600}[since]
        truth = mlcost_history.truth(end - seconds, end)
        for data in ("raw", "recorded"):
            body = _mlcost(url, "report", "--since", since, "--until", until, "--data", data)
            rows = {r["model"]: r for r in body["rows"] if r["group"] != "TOTAL"}
            parts = [f"{model} {figure} {_deviation(rows.get(model, {}).get(figure), want)}"
                     for model, figures in sorted(truth.items()) for figure, want in figures.items()
                     if want is not None or rows.get(model, {}).get(figure) is not None]
            print(f"report --since {since} --until {until} --data {data}: " + "; ".join(parts))


def _recommend_accuracy(url: str) -> None:
    body = _mlcost(url, "recommend", "--since", "14d", "--until", "2026-04-01")
    found = {(r["kind"], r["subject"]) for r in body["recommendations"]}
    statuses = {c["check"]: c["status"] for c in body["checks"]}
    print(f"recommend: {len(found & PLANTED)} of {len(PLANTED)} planted found; unplanted: "
          f"{sorted(found - PLANTED) or 'none'}; checks: {statuses}")


def _like_accuracy(url: str) -> None:
    day = 86400.0
    cases = (("chat:v2", ["--request-rate", "4", "--throughput", "10"], "chat", 7 * day),
             ("embed", ["--request-rate", "2", "--throughput", "10"], "embed", 7 * day))
    for like, flags, model, seconds in cases:
        end = mlcost_history.END
        want = mlcost_history.truth(end - seconds, end)[model]["cost_per_1k_usd"]
        body = _mlcost(url, "estimate", "--gpu", "a100-80gb", *flags, "--like", like, "--at", "2026-04-01",
                       "--history", "7d")
        measured = body["meta"]["measured"]["usd_per_unit"]
        print(f"estimate --like {like}: ${measured:.6f} per 1k, truth ${want:.6f} ({_deviation(measured, want)})")
    body = _mlcost(url, "estimate", "--gpu", "h100", "--gpus", "8", "--hours", "10", "--epochs", "4",
                   "--like", "trainer", "--at", "2026-04-01", "--history", "14d")
    measured = body["meta"]["measured"]["usd_per_unit"]
    want = 55.04 * mlcost_history.EPOCH_SECONDS / 3600
    print(f"estimate --like trainer: ${measured:.2f} per epoch, truth ${want:.2f} ({_deviation(measured, want)})")


def _print_stamps(url: str) -> None:
    """When the rules' samples are stamped, and what embed's hours around its 06:00 start hold."""
    answer = requests.get(f"{url}/api/v1/query", params={
        "query": 'model:mlcost_requests:increase1h{model="embed"}[4h]', "time": "2026-03-21T08:30:00Z"},
        timeout=10).json()["data"]["result"][0]["values"]
    print("the rules' embed requests recordings:",
          ", ".join(f"{datetime.fromtimestamp(float(t), UTC):%H:%M:%S} {float(v):g}" for t, v in answer))


def accuracy() -> None:
    """Every figure against the known answers, the hourly recordings made by the project's rules."""
    root = Path(tempfile.mkdtemp(prefix="mlcost-accuracy-"))
    data = mlcost_history.create_blocks(root / "tsdb", recorded=False)
    process, url = _start_prometheus(root, data)
    try:
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "rules", "--quiet", "--url", url,
                        "--start", "2026-03-04T00:07:00Z", "--end", "2026-04-01T01:07:00Z",
                        "--output-dir", str(root / "rules"), str(_hourly_rules(root))], check=True)
    finally:
        process.terminate()
        process.wait(10)
    for block in (root / "rules").iterdir():
        shutil.move(str(block), data / block.name)
    process, url = _start_prometheus(root, data)
    try:
        _print_stamps(url)
        _report_accuracy(url)
        _recommend_accuracy(url)
        _like_accuracy(url)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--accuracy", action="store_true", help="Measure figures against the known truth.")
    if options.parse_args().accuracy:
        accuracy()
    else:
        main()
