"""KServe's Python model server and its real /metrics, read through the `kserve` preset."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.upstream.harness import counted_until, http, running, server_source

pytestmark = pytest.mark.upstream


def test_kserve_preset_tells_predictions_that_raised_from_served_ones(upstream_venv, tmp_path):
    python = upstream_venv("kserve") / "bin" / "python"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    predict = f"{base}/v1/models/sklearn-iris:predict"
    command = [str(python), "kserve_app.py", "--http_port", str(port)]
    with running(command, f"{base}/v1/models/sklearn-iris", tmp_path / "kserve.log"):
        source = server_source("kserve", f"{base}/metrics", [("iris", "sklearn-iris")])
        assert source.sample().ok  # the baseline, before any traffic
        statuses = [http("POST", predict, {"instances": [[i, 1], [2, 3]]})[0] for i in range(6)]
        statuses += [http("POST", predict, {"instances": [[-1, 2]]})[0] for _ in range(2)]
        statuses += [http("POST", predict, {"rows": []})[0]]  # the model raises KeyError: a failure too
        statuses += [http("POST", f"{base}/v1/models/nosuch:predict", {"instances": [[1]]})[0]]  # rejected
        assert statuses == [200] * 6 + [500] * 3 + [404]
        expected = {"iris": {"requests": 6.0, "failed_requests": 3.0}}
        total = counted_until(source, expected, measured=("compute_seconds",))
        assert {"iris": {q: v for q, v in total["iris"].items() if q != "compute_seconds"}} == expected
        assert total["iris"]["compute_seconds"] > 0  # predict's own wall time, failed predictions included
