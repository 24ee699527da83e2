"""The real binaries the tests run: processes stopped whatever the outcome, the demo server, the exporter,
Prometheus with the project's rules, and the Prometheus tools (promtool, amtool) found with a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.net import free_port, wait_until
from harness.stackconfig import REPO, prometheus_config

# The Debian package that provides each binary the tests run, for the message when one is missing.
PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus", "amtool": "prometheus-alertmanager",
            "prometheus-alertmanager": "prometheus-alertmanager", "gcc": "gcc", "openssl": "openssl",
            "chromium": "chromium", "node": "nodejs"}


def tool(name: str) -> str:
    """The path of an installed binary; fails naming the package that provides it (scripts/setup.sh test)."""
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian package {PACKAGES.get(name, name)}; bash scripts/setup.sh test)"
    return path


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self._log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   cwd=REPO)  # `python -m demo.server` finds demo/ there
        process.log_path = self._log_dir / f"{name}.log"
        self._started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self._started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def start_demo_server(processes: Processes, models: str = "chat,embed", rps: float = 40.0) -> str:
    port = free_port()
    processes.start("demo", [sys.executable, "-m", "demo.server", "--listen-address",
                             f"127.0.0.1:{port}", "--models", models, "--load-rps", str(rps)])
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: requests.get(url, timeout=1).ok, what="the demo server")
    return url


def start_exporter(processes: Processes, config: Path, env: dict | None = None, *flags: str) -> str:
    port = free_port()
    processes.start("exporter", [sys.executable, "-m", "ml_cost_exporter", "--config.file", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}", *flags], env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: requests.get(url, timeout=1).ok, what="the exporter")
    return url


def start_prometheus(processes: Processes, tmp_path: Path, exporter_url: str, alertmanager: str | None = None,
                     port: int | None = None) -> str:
    """Real Prometheus with the project's config and rules, scraping and evaluating every second, `for: 1s`."""
    path = prometheus_config(tmp_path, exporter_url.split("/")[2], alertmanager)
    port = port or free_port()
    processes.start("prometheus", [
        "prometheus", f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # Alerts that fire before Prometheus has discovered its Alertmanagers (about 5 s) wait for the next
        # resend, a minute later by default.
        "--rules.alert.resend-delay=1s"])
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="Prometheus")
    return url


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start processes (`processes.start(name, args)`); each logs to tmp_path and is stopped after the test."""
    started = Processes(tmp_path)
    yield started
    started.stop_all()
