"""prometheus-fastapi-instrumentator's real /metrics, read through the `fastapi` preset."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.upstream.harness import counted_until, http, running, server_source

pytestmark = pytest.mark.upstream


def test_fastapi_preset_counts_exactly_the_successes_and_failures_each_handler_served(upstream_venv, tmp_path):
    python = upstream_venv("fastapi") / "bin" / "python"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(python), "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)]
    with running(command, f"{base}/metrics", tmp_path / "fastapi.log"):
        source = server_source("fastapi", f"{base}/metrics", [("classifier", "/predict"), ("embedder", "/embed")])
        assert source.sample().ok  # the baseline, before any traffic
        statuses = [http("POST", f"{base}/predict?value={i}")[0] for i in range(7)]
        statuses += [http("POST", f"{base}/predict?value=1&fail=true")[0] for _ in range(3)]
        statuses += [http("POST", f"{base}/predict?value=notanumber")[0] for _ in range(2)]  # rejected: 422
        statuses += [http("POST", f"{base}/embed?value={i}")[0] for i in range(4)]
        assert statuses == [200] * 7 + [500] * 3 + [422] * 2 + [200] * 4
        expected = {"classifier": {"requests": 7.0, "failed_requests": 3.0}, "embedder": {"requests": 4.0}}
        assert counted_until(source, expected) == expected
