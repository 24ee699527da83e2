"""LiteLLM's proxy and its real /metrics/, read through the `litellm` gateway preset."""

from __future__ import annotations

import json
import subprocess

import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.sources.gateway import GatewaySource
from tests.conftest import ManualClock, free_port, wait_until
from tests.upstream.harness import APPS, http, running

pytestmark = pytest.mark.upstream

MASTER_KEY = "sk-upstream-tier-7c1d9e4b2a"


def gateway_source(url: str, key_file) -> GatewaySource:
    config = parse_config(f"""
models: [{{name: llama}}, {{name: unreachable}}]
tenants:
  gateways: [{{preset: litellm, url: "{url}", models: {{llama: llama-8b, unreachable: unreachable}},
              authorization: {{credentials_file: "{key_file}"}}}}]
""", "upstream.yaml")
    return GatewaySource(config.tenants.gateways[0], 10.0, 1 << 24, 10_000, 1.0,
                         monotonic=ManualClock(0).monotonic)


def test_litellm_asks_for_an_api_key_on_its_metrics_by_default(upstream_venv):
    python = upstream_venv("litellm") / "bin" / "python"
    script = "import litellm; print(litellm.require_auth_for_metrics_endpoint)"
    default = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True, timeout=120,
                             env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert default.stdout.strip() == "True"


def test_litellm_gateway_counts_the_tokens_its_clients_were_billed(upstream_venv, tmp_path):
    litellm = upstream_venv("litellm") / "bin" / "litellm"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    env = {"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [str(litellm), "--config", str(APPS / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    with running(command, f"{base}/health/liveliness", tmp_path / "litellm.log", env=env):
        assert http("GET", f"{base}/metrics/")[0] == 401  # by default the metrics ask for the API key
        assert http("GET", f"{base}/metrics", headers=auth)[0] == 307  # and are mounted at /metrics/
        key_file = tmp_path / "litellm-key"
        key_file.write_text(MASTER_KEY + "\n")
        source = gateway_source(f"{base}/metrics", key_file)  # the redirect is followed, the key sent
        assert source.sample().tokens == {}  # the baseline, before any traffic
        billed = {"input": 0, "output": 0}
        for i, user in enumerate(["alice", "alice", "bob"]):
            status, body = http("POST", f"{base}/v1/chat/completions", headers=auth, body={
                "model": "llama-8b", "user": user, "messages": [{"role": "user", "content": "hello " * (i + 1)}]})
            assert status == 200, body
            usage = json.loads(body)["usage"]
            billed["input"] += usage["prompt_tokens"]
            billed["output"] += usage["completion_tokens"]
        failed, _ = http("POST", f"{base}/v1/chat/completions", headers=auth, body={
            "model": "unreachable", "messages": [{"role": "user", "content": "hi"}]})
        assert failed >= 500  # the provider is down: the call fails and bills no tokens
        assert billed["input"] > 0 and billed["output"] > 0
        # Without keys and teams in LiteLLM's database, team_alias is the string "None": one tenant. The failed
        # call to the unreachable model has no tokens.
        expected = {(("llama", "latest"), "None", kind): float(n) for kind, n in billed.items()}
        total: dict = {}

        def counted() -> bool:
            for key, value in source.sample().tokens.items():
                total[key] = total.get(key, 0.0) + value
            return total == expected

        wait_until(counted, timeout=30, interval=0.2, what="the gateway's token counters")
        assert total == expected
