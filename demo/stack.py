"""The quick start: a demo inference server under load, the exporter pricing it, Prometheus with the
project's rules, Alertmanager with the project's config and a webhook sink that prints the pages.

Prints the URLs and how to read what follows, then every few seconds one line: requests/s, $ per 1k per model,
spend against the budget, alerts firing. Ctrl-C stops every process it started and says which. Prometheus and
Alertmanager run with the production rule timings; the demo budget is small enough to page within minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from demo.webhook_sink import start_sink
from harness.stackconfig import REPO, alertmanager_config, prometheus_config
from ml_cost_exporter.sources.fetch import Fetcher, FetchError

RATE_WINDOW = 30.0  # seconds of scrapes the req/s figure averages over
READING_ALERTS = """\
How to read it: "burn now" is the pod's spend rate this moment over what the budget affords. A page (lines
starting >> PAGE) quotes Prometheus' 1-hour burn rate and `mlcost budgets` its 1h, 6h and 1d rates: each counts
the spend within its window over the whole window, so while the demo is younger than the window they read lower
than "burn now" and climb toward it. While a critical page fires, Alertmanager holds back the same budget's
warnings (its inhibit rules), so budget threshold warnings do not print here then.\
"""


def _get(url: str, timeout: float) -> str:
    """One GET with the exporter's own fetch (a total deadline, a size cap); FetchError on any failure."""
    fetcher = Fetcher(url, timeout, 16 * 1024 * 1024)
    try:
        return fetcher.fetch()
    finally:
        fetcher.close()


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(_get(url, 2)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _firing(prometheus: str | None) -> list[str]:
    if prometheus is None:
        return []
    try:
        alerts = json.loads(_get(f"{prometheus}/api/v1/alerts", 2))["data"]["alerts"]
    except (FetchError, ValueError, KeyError):
        return []
    return sorted({a["labels"]["alertname"] for a in alerts
                   if a["state"] == "firing" and a["labels"]["alertname"] != "Watchdog"})


def status_line(samples: dict, previous: dict | None, seconds: float, firing: list[str]) -> str:
    parts = []
    requests_now = sum(v for k, v in samples.items() if k[0] == "mlcost_requests_total")
    if previous:
        requests_before = sum(v for k, v in previous.items() if k[0] == "mlcost_requests_total")
        parts.append(f"{(requests_now - requests_before) / seconds:6.1f} req/s")
    else:
        parts.append("warming up")  # a rate needs two scrapes
    for (name, labels), value in sorted(samples.items()):
        if name == "inference_cost_per_1k_usd":
            parts.append(f"{dict(labels)['model']} ${value:.4f}/1k")
    spend = sum(v for (n, _), v in samples.items() if n == "mlcost_budget_spend_usd_total")
    limit = sum(v for (n, _), v in samples.items() if n == "mlcost_budget_limit_usd")
    burn = sum(v for (n, _), v in samples.items() if n == "mlcost_budget_burn_rate")
    if limit:
        parts.append(f"budget ${spend:.4f} of ${limit:.2f} today (burn now {burn:.0f}x)")
    parts.append(f"alerts firing: {', '.join(firing) if firing else 'none'}")
    return " | ".join(parts)


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # finds demo/
        process.name = name
        self.started.append(process)
        return process

    def wait_ready(self, url: str, process: subprocess.Popen, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{process.name} exited with status {process.returncode}; "
                                 f"see {self.workdir / (process.name + '.log')}")
            try:
                _get(url, 1)
                return
            except FetchError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{process.name} did not come up at {url}")

    def stop(self) -> None:
        running = [p for p in reversed(self.started) if p.poll() is None]
        if running:
            print("stopping " + ", ".join(f"{p.name} (pid {p.pid})" for p in running), flush=True)
        for process in running:
            process.terminate()
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def run(args: argparse.Namespace) -> int:
    """Start the stack with the options of `python -m demo`, report until stopped, then stop it all."""
    workdir = Path(tempfile.mkdtemp(prefix="ml-cost-demo-"))
    config = workdir / "pricing.yaml"
    config.write_text((REPO / "exporter" / "examples" / "demo.yaml").read_text()
                      .replace("127.0.0.1:18000", f"127.0.0.1:{args.server_port}"))
    stack = Stack(workdir)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    sink = start_sink(("127.0.0.1", args.sink_port), emit=lambda line: print(f"  >> {line}", flush=True))
    try:
        server = stack.start("demo-server", [sys.executable, "-m", "demo.server", "--listen-address",
                                             f"127.0.0.1:{args.server_port}", "--models", "chat,embed",
                                             "--load-rps", str(args.load_rps)])
        stack.wait_ready(f"http://127.0.0.1:{args.server_port}/health", server)
        # The demo prices its GPU from the config; without a GPU here the gpu collector would only report failure.
        exporter = stack.start("exporter", [sys.executable, "-m", "ml_cost_exporter", "--config.file", str(config),
                                            "--web.listen-address", f"127.0.0.1:{args.exporter_port}",
                                            "--no-collector.gpu"])
        metrics = f"http://127.0.0.1:{args.exporter_port}/metrics"
        stack.wait_ready(metrics, exporter)
        prometheus = None
        urls = [("demo inference server", f"http://127.0.0.1:{args.server_port}/metrics"),
                ("ml-cost-exporter", metrics)]
        if shutil.which("prometheus") and shutil.which("prometheus-alertmanager"):
            alertmanager = f"127.0.0.1:{args.alertmanager_port}"
            am = stack.start("alertmanager", [
                "prometheus-alertmanager",
                f"--config.file={alertmanager_config(workdir, f'http://127.0.0.1:{args.sink_port}')}",
                f"--storage.path={workdir / 'alertmanager-data'}", f"--web.listen-address={alertmanager}",
                "--cluster.listen-address="])
            stack.wait_ready(f"http://{alertmanager}/-/ready", am)
            prom_config = prometheus_config(workdir, f"127.0.0.1:{args.exporter_port}", alertmanager,
                                            interval="5s", alert_for=None)
            prom = stack.start("prometheus", [
                "prometheus", f"--config.file={prom_config}", f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{args.prometheus_port}"])
            prometheus = f"http://127.0.0.1:{args.prometheus_port}"
            stack.wait_ready(f"{prometheus}/-/ready", prom)
            urls += [("Prometheus", prometheus + "/graph?g0.expr=inference_cost_per_1k_usd"),
                     ("Alertmanager", f"http://{alertmanager}"),
                     ("webhook sink (prints pages here)", f"http://127.0.0.1:{args.sink_port}")]
        else:
            print("prometheus and prometheus-alertmanager are not installed: running without alerting", flush=True)
        for name, url in urls:
            print(f"{name + ':':34s} {url}", flush=True)
        print(f"logs and generated configs: {workdir}. Ctrl-C stops everything.", flush=True)
        if prometheus:
            print(READING_ALERTS, flush=True)
        # The rate is taken over the scrapes of the last RATE_WINDOW seconds: the exporter samples every few
        # seconds, so two scrapes close together would read 0 req/s, then twice the load.
        recent: deque[tuple[float, dict]] = deque(maxlen=max(2, int(RATE_WINDOW / args.every) + 1))
        ends = time.monotonic() + args.duration if args.duration else None
        while not stopping and (ends is None or time.monotonic() < ends):
            time.sleep(min(args.every, 0.5) if not recent else args.every)
            if stopping:
                break
            try:
                samples = _scrape(metrics)
            except FetchError as exc:
                print(f"exporter unreachable: {exc}", flush=True)
                continue
            now = time.monotonic()
            then, previous = recent[0] if recent else (now, None)
            print(time.strftime("%H:%M:%S"), status_line(samples, previous, now - then, _firing(prometheus)),
                  flush=True)
            recent.append((now, samples))
    finally:
        stack.stop()
        print(f"stopping the webhook sink on 127.0.0.1:{args.sink_port}", flush=True)
        sink.shutdown()
        sink.server_close()
    return 0

