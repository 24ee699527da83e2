"""The example service (exporter/examples/cached_service.py), counted by @track_cost, beside the real exporter
reading it through the `python` preset, as processes: successes, failures and cache hits arrive exactly."""

import sys
import textwrap

import requests

from tests.conftest import A100, GIB, REPO, free_port, wait_until
from tests.integration.conftest import start_exporter
from tests.integration.test_exporter_end_to_end import scrape, value

SERVICE = REPO / "exporter" / "examples" / "cached_service.py"
CHAT = {"model": "chat", "version": "v1"}
DISTINCT = ["tell me a story", "what is cost per 1k", "three word prompt", "one", "a b c d e"]
FAILING = ["fail now", "fail again", "fail harder"]
REPEATED = DISTINCT[:3] + DISTINCT[:1]  # answered from the cache


def start_service(processes) -> str:
    port = free_port()
    processes.start("cached-service", [sys.executable, str(SERVICE), "--listen-address", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{base}/metrics", timeout=1).ok, what="the example service")
    return base


def ask(base: str, prompt: str) -> requests.Response:
    return requests.get(f"{base}/v1/complete", params={"prompt": prompt}, timeout=5)


def test_the_exporter_counts_an_instrumented_service_s_successes_failures_and_cache_hits_exactly(
        processes, tmp_path, fake_nvml_library):
    base = start_service(processes)
    state = tmp_path / "nvml.txt"
    state.write_text(f"init 0\ngpu 0 50 {20 * GIB} {80 * GIB} 200000 0 0 GPU-app {A100}\n")
    config = tmp_path / "pricing.yaml"
    config.write_text(textwrap.dedent(f"""
        allocation: {{gpu: {{type: a100-80gb}}, vcpus: 8, memory_gib: 64}}
        models:
          - {{name: chat, version: v1, server: {{preset: python, url: "{base}/metrics", version: v1}}}}
        collection: {{interval_seconds: 0.25, cost_window_seconds: 5, server_timeout_seconds: 1}}
    """))
    env = {"LD_LIBRARY_PATH": str(fake_nvml_library), "FAKE_NVML_STATE": str(state), "NVIDIA_VISIBLE_DEVICES": "all"}
    url = start_exporter(processes, config, env)
    wait_until(lambda: value(scrape(url), "mlcost_exporter_source_up", source=f"server:{base}/metrics") == 1.0,
               what="the exporter's first read of the service")

    answers = [ask(base, prompt) for prompt in DISTINCT + FAILING + REPEATED]
    assert [a.status_code for a in answers] == [200] * 5 + [500] * 3 + [200] * 4
    assert [a.json().get("cache_hit", False) for a in answers[8:]] == [True] * 4

    served = len(DISTINCT) + len(REPEATED)
    samples = wait_until(lambda: (s := scrape(url)) and value(s, "mlcost_requests_total", **CHAT) == served
                         and value(s, "mlcost_failed_requests_total", **CHAT) == len(FAILING) and s,
                         what="the exporter to count every request")
    words = sum(len(prompt.split()) for prompt in DISTINCT)  # cached answers used no tokens
    assert value(samples, "mlcost_tokens_total", **CHAT, kind="prompt") == words
    assert value(samples, "mlcost_tokens_total", **CHAT, kind="generation") == words
    assert value(samples, "mlcost_usd_total", **CHAT, workload="inference", resource="gpu") > 0

    app = scrape(f"{base}/metrics")
    assert value(app, "mlcost_app_cache_hits_total", **CHAT) == len(REPEATED)
    assert value(app, "mlcost_app_requests_total", **CHAT, outcome="error", exception="ModelError") == len(FAILING)
    assert value(app, "mlcost_app_requests_total", **CHAT, outcome="success", exception="") == served
    assert value(scrape(url), "mlcost_requests_total", **CHAT) == served  # settled: no count arrives twice
