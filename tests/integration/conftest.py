"""Processes started by the integration tests, stopped whatever the outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, wait_until


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self._log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
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


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop_all()


def start_demo_server(processes: Processes, models: str = "chat,embed", rps: float = 40.0) -> str:
    port = free_port()
    processes.start("demo", [sys.executable, "-m", "ml_cost_exporter.demo.server", "--listen-address",
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
