import re
import subprocess
import textwrap
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from ml_cost_exporter.exposition.collectors import BUILDERS, FamilyBuilder, StateCollector, build_registry
from ml_cost_exporter.runtime import Clocks, Runtime
from ml_cost_exporter.sources.processes import ProcessSource
from tests.conftest import A100, FIXTURES, GIB
from tests.support.binaries import tool

GOLDEN = FIXTURES / "golden" / "metrics.txt"
CONFIG = textwrap.dedent("""
    pricing: {provider: aws}
    allocation: {gpu: {type: a100-80gb, count: 2}, vcpus: 16, memory_gib: 128}
    models:
      - name: llama
        version: v1
        server: {preset: vllm, url: "http://server/metrics", model: "meta-llama/Llama-3.1-8B-Instruct"}
        target_cost_per_1k_usd: 0.25
        labels: {team: search, env: prod}
      - name: reranker
        version: v7
        server: {preset: triton, url: "http://triton/metrics", model: resnet50}
        labels: {team: search}
    budgets:
      - {name: search-monthly, amount_usd: 20000, selector: {team: search}}
      - {name: llama-daily, amount_usd: 100, period: day, selector: {models: [llama]}, thresholds: [0.5, 1.0]}
    collection: {interval_seconds: 60, cost_window_seconds: 300}
""")


def vllm_text(requests: int) -> str:
    return ((FIXTURES / "servers" / "vllm.txt").read_text().replace("} 1200.0", f"}} {requests}.0")
            .replace("} 152340.0", f"}} {requests * 100}.0"))


def triton_text(requests: int) -> str:
    return (FIXTURES / "servers" / "triton.txt").read_text().replace(
        'model="resnet50",version="1"} 420', f'model="resnet50",version="1"}} {requests}')


def scripted_processes():
    """psutil's process_iter for two serving processes whose CPU time grows by 30 s and 15 s a tick."""
    tick = iter(range(1, 100))

    def iterate(attrs, ad_value):
        n = next(tick)
        for pid, cpu, rss in ((101, 30.0 * n, 6 * GIB), (102, 15.0 * n, 2 * GIB)):
            times = SimpleNamespace(user=cpu * 0.8, system=cpu * 0.2)
            yield SimpleNamespace(info={"pid": pid, "name": "python3", "cmdline": ["python3", "-m", "vllm"],
                                        "cpu_times": times, "memory_info": SimpleNamespace(rss=rss),
                                        "create_time": 1000.0 + pid})
    return iterate


@pytest.fixture
def runtime(tmp_path, clock, fake_nvml):
    fake_nvml.write("init 0",
                    f"gpu 0 80 {40 * GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}",
                    f"gpu 1 20 {10 * GIB} {80 * GIB} 100000 0 0 GPU-bbbb {A100}")
    config = tmp_path / "pricing.yaml"
    config.write_text(CONFIG)
    (tmp_path / "cpu.max").write_text("max 100000")
    scripted = {"http://server/metrics": iter([vllm_text(1200), vllm_text(1800), vllm_text(2400)]),
                "http://triton/metrics": iter([triton_text(420), triton_text(720), triton_text(1020)])}
    rt = Runtime(str(config), frozenset({"gpu", "server", "process"}), Clocks(clock.wall, clock.monotonic),
                 environ={}, cgroup_root=tmp_path, server_fetch=lambda url: next(scripted[url]))
    rt.sampler.process_source = ProcessSource(rt.config.processes, exclude_pid=-1, iterate=scripted_processes())
    for _ in range(3):
        rt.tick()
        clock.advance(60)
    yield rt
    rt.close()


def render(runtime: Runtime) -> str:
    text = generate_latest(build_registry(runtime.state, runtime.clocks.monotonic)).decode()
    return re.sub(r'pythonversion="[^"]*"', 'pythonversion="X"', text)


def matches_golden(text: str, golden, update: bool) -> None:
    """Assert `text` is the saved expected output; with --update-golden, save it first."""
    if update:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), "run pytest with --update-golden after an intended change"


def test_metrics_match_the_saved_expected_output(runtime, update_golden):
    text = render(runtime)
    matches_golden(text, GOLDEN, update_golden)


def test_saved_output_passes_promtool_check_metrics():
    promtool = tool("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    result = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(), capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_values_follow_from_the_scripted_load(runtime):
    registry = build_registry(runtime.state, runtime.clocks.monotonic)
    value = registry.get_sample_value
    llama, reranker = {"model": "llama", "version": "v1"}, {"model": "reranker", "version": "v7"}
    # Two intervals of 60 s; each llama got 600 requests and reranker 300: llama pays 2/3.
    assert value("mlcost_requests_total", llama) == 1200.0
    assert value("mlcost_requests_total", reranker) == 600.0
    pod_hourly = sum(value("mlcost_hourly_usd", {**m, "workload": "inference", "resource": r})
                     for m in (llama, reranker) for r in ("gpu", "cpu", "memory", "fixed"))
    spent = sum(value("mlcost_usd_total", {**m, "workload": "inference", "resource": r})
                for m in (llama, reranker) for r in ("gpu", "cpu", "memory", "fixed"))
    assert spent == pytest.approx(pod_hourly * 120 / 3600, rel=1e-9)
    llama_cost = sum(value("mlcost_usd_total", {**llama, "workload": "inference", "resource": r})
                     for r in ("gpu", "cpu", "memory", "fixed"))
    assert llama_cost == pytest.approx(spent * 2 / 3, rel=1e-9)
    assert value("inference_cost_per_1k_usd", llama) == pytest.approx(llama_cost / 1200 * 1000, rel=1e-9)
    # GPUs idle 50 % on average (80 % and 20 % busy).
    gpu_cost = value("mlcost_usd_total", {**llama, "workload": "inference", "resource": "gpu"})
    assert value("mlcost_idle_usd_total", {**llama, "resource": "gpu"}) == pytest.approx(gpu_cost * 0.5)
    assert value("mlcost_gpu_utilization_ratio", {"gpu": "0", "uuid": "GPU-aaaa", "gpu_name": A100,
                                                  "mig_gpu_instance": "", "mig_compute_instance": ""}) == 0.8
    assert value("mlcost_budget_spend_usd_total", {"budget": "llama-daily", "period": "2026-11-16"}) == \
        pytest.approx(llama_cost, rel=1e-9)
    assert value("mlcost_budget_alert_threshold_ratio", {"budget": "llama-daily", "threshold": "0.5"}) == 0.5
    # Each budget names exactly the models its selector selects: the team selector takes both, the
    # model list only llama.
    assert value("mlcost_budget_info", {"budget": "search-monthly", **llama}) == 1
    assert value("mlcost_budget_info", {"budget": "search-monthly", "model": "reranker", "version": "v7"}) == 1
    assert value("mlcost_budget_info", {"budget": "llama-daily", **llama}) == 1
    assert value("mlcost_budget_info", {"budget": "llama-daily", "model": "reranker", "version": "v7"}) is None
    assert value("mlcost_target_cost_per_1k_usd", llama) == 0.25
    assert value("mlcost_tokens_total", {**llama, "kind": "prompt"}) == 120000.0
    assert value("mlcost_exporter_source_up", {"source": "server:http://triton/metrics"}) == 1.0
    assert value("mlcost_exporter_collector_success", {"collector": "gpu"}) == 1.0


def test_a_failing_collector_drops_only_its_own_families(runtime):
    from prometheus_client import CollectorRegistry

    def broken(state):
        yield from ()
        raise RuntimeError("boom")

    runtime.tick()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(runtime.state, (*BUILDERS, FamilyBuilder("broken", broken))))
    text = generate_latest(registry).decode()
    assert "inference_cost_per_1k_usd" in text and "mlcost_gpu_power_watts" in text
    assert registry.get_sample_value("mlcost_exporter_collector_success", {"collector": "broken"}) == 0.0
    assert registry.get_sample_value("mlcost_exporter_collector_success", {"collector": "cost"}) == 1.0


def test_gpu_series_are_absent_not_zero_when_nvml_fails(runtime, fake_nvml):
    fake_nvml.write("init 0", f"gpu 0 80 {GIB} {80 * GIB} 300000 1 0 GPU-aaaa {A100}",
                    f"gpu 1 20 {GIB} {80 * GIB} 100000 1 0 GPU-bbbb {A100}")
    runtime.tick()
    registry = build_registry(runtime.state, runtime.clocks.monotonic)
    text = generate_latest(registry).decode()
    assert "mlcost_gpu_utilization_ratio{" not in text
    assert registry.get_sample_value("mlcost_exporter_collector_success", {"collector": "gpu"}) == 0.0
    assert registry.get_sample_value("mlcost_exporter_source_up", {"source": "nvml"}) == 0.0
    assert registry.get_sample_value("mlcost_allocated_gpus") == 2.0  # cost still accrues from the config
