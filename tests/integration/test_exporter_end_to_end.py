"""The exporter process beside a demo inference server process, with GPUs from the fake NVML."""

import signal
import subprocess
import textwrap

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import A100, GIB, wait_until
from tests.support.binaries import start_demo_server, start_exporter, tool


def scrape(url: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def config_text(server_url: str, budget: float) -> str:
    return textwrap.dedent(f"""
        allocation: {{gpu: {{type: a100-80gb}}, vcpus: 8, memory_gib: 64}}
        models:
          - {{name: chat, version: v1, server: {{preset: vllm, url: "{server_url}"}}, target_cost_per_1k_usd: 0.1}}
          - {{name: embed, version: v1, server: {{preset: vllm, url: "{server_url}"}}}}
        budgets: [{{name: demo, amount_usd: {budget}, period: day}}]
        collection: {{interval_seconds: 0.25, cost_window_seconds: 5, server_timeout_seconds: 1}}
    """)


def test_exporter_prices_a_live_server_survives_bad_reloads_and_a_dead_server(
        processes, tmp_path, fake_nvml_library):
    server_url = start_demo_server(processes)
    state = tmp_path / "nvml.txt"
    state.write_text(f"init 0\ngpu 0 40 {20 * GIB} {80 * GIB} 210000 0 0 GPU-e2e {A100}\n")
    config = tmp_path / "pricing.yaml"
    config.write_text(config_text(server_url, 50))
    env = {"LD_LIBRARY_PATH": str(fake_nvml_library), "FAKE_NVML_STATE": str(state), "NVIDIA_VISIBLE_DEVICES": "all"}
    url = start_exporter(processes, config, env)
    exporter = processes._started[-1]

    samples = wait_until(lambda: (s := scrape(url)) and value(s, "inference_cost_per_1k_usd", model="chat",
                                                              version="v1") and s, what="cost per 1k of chat")
    assert value(samples, "mlcost_requests_total", model="chat", version="v1") > 0
    assert value(samples, "mlcost_tokens_total", model="chat", version="v1", kind="generation") > 0
    assert value(samples, "mlcost_gpu_utilization_ratio", gpu="0", uuid="GPU-e2e", gpu_name=A100,
                 mig_gpu_instance="", mig_compute_instance="") == 0.4
    assert value(samples, "mlcost_exporter_source_up", source=f"server:{server_url}") == 1.0
    assert value(samples, "mlcost_exporter_collector_success", collector="gpu") == 1.0
    assert value(samples, "mlcost_allocated_gpus") == 1.0

    promtool = tool("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    body = requests.get(url, timeout=5).content
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

    config.write_text("budgets: [{name: demo, amount_usd: -5}]\n")
    exporter.send_signal(signal.SIGHUP)
    wait_until(lambda: value(scrape(url), "mlcost_exporter_config_last_reload_successful") == 0.0,
               what="the broken config to be rejected")
    assert value(scrape(url), "mlcost_budget_limit_usd", budget="demo") == 50.0  # the last good config serves

    config.write_text(config_text(server_url, 75))
    exporter.send_signal(signal.SIGHUP)
    wait_until(lambda: value(scrape(url), "mlcost_budget_limit_usd", budget="demo") == 75.0,
               what="the fixed config to be loaded")
    assert value(scrape(url), "mlcost_exporter_config_last_reload_successful") == 1.0

    processes._started[0].kill()  # the inference server dies
    samples = wait_until(lambda: (s := scrape(url)) and value(
        s, "mlcost_exporter_source_up", source=f"server:{server_url}") == 0.0 and s, what="source down")
    assert value(samples, "mlcost_exporter_collector_success", collector="server") == 0.0
    spent = sum(v for (name, _), v in samples.items() if name == "mlcost_usd_total")
    wait_until(lambda: sum(v for (n, _), v in scrape(url).items() if n == "mlcost_usd_total") > spent,
               what="cost to keep accruing while the server is down")

    exporter.terminate()
    assert exporter.wait(10) == 0
