"""BentoML's real /metrics, read through the `bentoml` preset: probes and docs pages are not requests."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.upstream.harness import counted_until, http, running, server_source

pytestmark = pytest.mark.upstream


def test_bentoml_preset_counts_api_calls_and_not_the_probes_around_them(upstream_venv, tmp_path):
    bentoml = upstream_venv("bentoml") / "bin" / "bentoml"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(bentoml), "serve", "bento_service:Classifier", "--host", "127.0.0.1", "--port", str(port)]
    env = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    with running(command, f"{base}/readyz", tmp_path / "bentoml.log", env=env):
        source = server_source("bentoml", f"{base}/metrics", [("iris", "iris_classifier")])
        assert source.sample().ok  # the baseline, before any traffic
        statuses = [http("POST", f"{base}/classify", {"value": i})[0] for i in range(5)]
        statuses += [http("POST", f"{base}/classify", {"value": -1})[0] for _ in range(2)]
        statuses += [http("POST", f"{base}/classify", {"wrong": 1})[0]]  # rejected: 400
        for path in ["/livez", "/readyz", "/healthz", "/docs.json", "/", "/schema.json"] * 3:
            statuses.append(http("GET", f"{base}{path}")[0])  # what probes and browsers send
        assert statuses == [200] * 5 + [500] * 2 + [400] + [200] * 18
        expected = {"iris": {"requests": 5.0, "failed_requests": 2.0}}
        assert counted_until(source, expected) == expected
        # The probes are in the server's own counter, so a preset without the exclusion would count them.
        assert 'endpoint="/livez",http_response_code="200"' in http("GET", f"{base}/metrics")[1].decode()
