"""The quick start: the demo inference server under load and the exporter pricing it.

Prints the URLs, then every few seconds one line: requests/s, $ per 1k per
model, spend against the budget. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=2).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _status_line(samples: dict, previous: dict | None, seconds: float) -> str:
    parts = []
    requests_now = {dict(k[1])["model"]: v for k, v in samples.items() if k[0] == "mlcost_requests_total"}
    if previous:
        before = {dict(k[1])["model"]: v for k, v in previous.items() if k[0] == "mlcost_requests_total"}
        rate = sum(requests_now.values()) - sum(before.values())
        parts.append(f"{rate / seconds:6.1f} req/s")
    for (name, labels), value in sorted(samples.items()):
        if name == "inference_cost_per_1k_usd":
            parts.append(f"{dict(labels)['model']} ${value:.4f}/1k")
    spend = sum(v for (n, _), v in samples.items() if n == "mlcost_budget_spend_usd_total")
    limit = sum(v for (n, _), v in samples.items() if n == "mlcost_budget_limit_usd")
    burn = sum(v for (n, _), v in samples.items() if n == "mlcost_budget_burn_rate")
    if limit:
        parts.append(f"budget ${spend:.4f} of ${limit:.2f} today (burn {burn:.1f}x)")
    return " | ".join(parts) or "waiting for the first samples"


def _wait_ready(url: str, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[2]} exited with status {process.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-cost-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--exporter-port", type=int, default=9945)
    parser.add_argument("--server-port", type=int, default=18000)
    parser.add_argument("--load-rps", type=float, default=25.0)
    parser.add_argument("--every", type=float, default=5.0, help="Seconds between status lines.")
    parser.add_argument("--duration", type=float, default=0.0, help="Stop after this many seconds (0: run on).")
    args = parser.parse_args(argv)
    config = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"  # the checkout's copy
    text = config.read_text().replace("127.0.0.1:18000", f"127.0.0.1:{args.server_port}")
    runtime_config = Path("/tmp") / f"ml-cost-demo-{args.exporter_port}.yaml"
    runtime_config.write_text(text)

    started: list[subprocess.Popen] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        server = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter.demo.server", "--listen-address",
                                   f"127.0.0.1:{args.server_port}", "--models", "chat,embed",
                                   "--load-rps", str(args.load_rps)])
        started.append(server)
        _wait_ready(f"http://127.0.0.1:{args.server_port}/health", server, time.monotonic() + 30)
        exporter = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter", "--config.file", str(runtime_config),
                                     "--web.listen-address", f"127.0.0.1:{args.exporter_port}"])
        started.append(exporter)
        metrics = f"http://127.0.0.1:{args.exporter_port}/metrics"
        _wait_ready(metrics, exporter, time.monotonic() + 30)
        print(f"demo inference server: http://127.0.0.1:{args.server_port}/metrics", flush=True)
        print(f"ml-cost-exporter:      {metrics}   (config {runtime_config})", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        previous, last = None, time.monotonic()
        ends = time.monotonic() + args.duration if args.duration else None
        while not stopping and (ends is None or time.monotonic() < ends):
            time.sleep(min(args.every, 0.5) if previous is None else args.every)
            if stopping:
                break
            try:
                samples = _scrape(metrics)
            except requests.RequestException as exc:
                print(f"exporter unreachable: {exc}", flush=True)
                continue
            now = time.monotonic()
            print(time.strftime("%H:%M:%S"), _status_line(samples, previous, now - last), flush=True)
            previous, last = samples, now
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
