"""TorchServe's real frontend and worker, its Prometheus metrics read through the `torchserve` preset."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import free_port, wait_until
from tests.upstream.harness import APPS, counted_until, http, running, server_source

pytestmark = pytest.mark.upstream


def test_torchserve_handler_failures_are_503s_and_count_as_failed_requests(upstream_venv, tmp_path):
    venv = upstream_venv("torchserve")
    store = tmp_path / "store"
    store.mkdir()
    subprocess.run([str(venv / "bin" / "torch-model-archiver"), "--model-name", "echo", "--version", "1.0",
                    "--handler", str(APPS / "echo_handler.py"), "--export-path", str(store)], check=True, timeout=120)
    inference, management, metrics = free_port(), free_port(), free_port()
    (tmp_path / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{inference}\nmanagement_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{metrics}\nmetrics_mode=prometheus\ndisable_token_authorization=true\n"
        f"model_store={store}\ndefault_workers_per_model=1\n")
    command = [str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs", "--disable-token-auth",
               "--ts-config", "config.properties", "--models", "echo=echo.mar"]
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin"}  # the frontend starts its worker with the `python` on PATH
    base = f"http://127.0.0.1:{inference}"
    with running(command, f"http://127.0.0.1:{metrics}/metrics", tmp_path / "torchserve.log", env=env,
                 cwd=tmp_path):
        def worker_ready() -> bool:
            status, body = http("GET", f"http://127.0.0.1:{management}/models/echo")
            return status == 200 and json.loads(body)[0]["workers"][0]["status"] == "READY"
        wait_until(worker_ready, timeout=120, interval=0.5, what="the echo model's worker")
        source = server_source("torchserve", f"http://127.0.0.1:{metrics}/metrics", [("echo", "echo")])
        assert source.sample().ok  # the baseline, before any traffic
        statuses = [http("POST", f"{base}/predictions/echo", {"value": i})[0] for i in range(5)]
        statuses += [http("POST", f"{base}/predictions/echo", {"value": -1})[0] for _ in range(2)]
        statuses += [http("POST", f"{base}/predictions/nosuch", {"value": 1})[0]]  # rejected: 404
        assert statuses == [200] * 5 + [503] * 2 + [404]
        expected = {"echo": {"requests": 5.0, "failed_requests": 2.0}}
        assert counted_until(source, expected) == expected
