"""The runtime with either GPU source: dcgm-exporter read over HTTP, and the hidden-GPU (Bottlerocket) check."""

from __future__ import annotations

import logging
import textwrap

import pytest
from prometheus_client import generate_latest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime
from tests.unit.sources.test_dcgm import GPU0, NODE, VLLM_POD, Exporter

DCGM_CONFIG = textwrap.dedent("""
    pricing: {provider: aws}
    allocation: {gpu: {type: h100, count: 1}, vcpus: 8, memory_gib: 64}
    gpu:
      source: dcgm
      dcgm: {url: "http://${NODE_IP}:PORT/metrics"}
""")


@pytest.fixture
def exporter():
    server = Exporter()
    yield server
    server.close()


def runtime_for(tmp_path, clock, text: str, environ: dict, enabled=frozenset({"gpu"})) -> Runtime:
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    return Runtime(str(path), enabled, Clocks(clock.wall, clock.monotonic), environ=environ, cgroup_root=tmp_path)


def value(runtime: Runtime, name: str, labels: dict | None = None) -> float | None:
    return build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value(name, labels or {})


def test_the_pods_gpu_from_dcgm_exporter_is_exported_and_priced_without_nvml(tmp_path, clock, exporter, caplog):
    environ = {**VLLM_POD, "NODE_IP": "127.0.0.1"}
    runtime = runtime_for(tmp_path, clock, DCGM_CONFIG.replace("PORT", str(exporter.port)), environ)
    clock.advance(60)
    runtime.tick()
    labels = {"gpu": "0", "uuid": GPU0, "gpu_name": "NVIDIA H100 80GB HBM3", "mig_gpu_instance": "",
              "mig_compute_instance": ""}
    assert value(runtime, "mlcost_gpu_utilization_ratio", labels) == pytest.approx(0.87)
    assert value(runtime, "mlcost_gpu_power_watts", labels) == pytest.approx(512.337)
    assert value(runtime, "mlcost_exporter_source_up", {"source": "dcgm"}) == 1.0
    assert value(runtime, "mlcost_exporter_source_up", {"source": "nvml"}) is None
    assert value(runtime, "mlcost_exporter_gpu_mismatch", {"source": "dcgm"}) == 0.0
    assert value(runtime, "mlcost_exporter_invalid_samples_total", {"source": "dcgm"}) == 0.0
    assert value(runtime, "mlcost_allocated_gpus") == 1.0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    runtime.close()


def test_a_gpu_dcgm_no_longer_shows_is_reported_once_while_cost_keeps_accruing(tmp_path, clock, exporter, caplog):
    environ = {**VLLM_POD, "NODE_IP": "127.0.0.1"}
    runtime = runtime_for(tmp_path, clock, DCGM_CONFIG.replace("PORT", str(exporter.port)), environ)
    exporter.body = "\n".join(line for line in NODE.splitlines() if GPU0 not in line) + "\n"
    gpu_cost = []
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            clock.advance(60)
            runtime.tick()
            usd = runtime.books.ledger.snapshot(clock.wall()).usd_total
            gpu_cost.append(usd[("default", "latest", "inference", "gpu")])
    assert value(runtime, "mlcost_exporter_gpu_mismatch", {"source": "dcgm"}) == 1.0
    assert value(runtime, "mlcost_exporter_source_up", {"source": "dcgm"}) == 1.0  # read fine, just not our GPU
    registry = build_registry(runtime.state, runtime.clocks.monotonic)
    assert "mlcost_gpu_utilization_ratio" not in generate_latest(registry).decode()
    assert gpu_cost[0] > 0 and gpu_cost[0] < gpu_cost[1] < gpu_cost[2]  # priced from the allocation
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "prices 1 GPU(s) but the dcgm GPU source sees none" in line
    assert "no GPU for pod ml-serving/vllm-7d9f8c6b5-x2kqp" in line
    exporter.body = NODE
    clock.advance(60)
    runtime.tick()
    assert value(runtime, "mlcost_exporter_gpu_mismatch", {"source": "dcgm"}) == 0.0
    runtime.close()


def test_an_unreachable_dcgm_exporter_is_a_failing_collector_not_a_hidden_gpu(tmp_path, clock, exporter):
    port = exporter.port
    exporter.close()
    runtime = runtime_for(tmp_path, clock, DCGM_CONFIG.replace("PORT", str(port)), {**VLLM_POD, "NODE_IP": "127.0.0.1"})
    clock.advance(60)
    runtime.tick()
    assert value(runtime, "mlcost_exporter_collector_success", {"collector": "gpu"}) == 0.0
    assert value(runtime, "mlcost_exporter_source_up", {"source": "dcgm"}) == 0.0
    assert value(runtime, "mlcost_exporter_gpu_mismatch", {"source": "dcgm"}) == 0.0
    assert runtime.books.ledger.snapshot(clock.wall()).usd_total[("default", "latest", "inference", "gpu")] > 0
    runtime.close()


@pytest.mark.parametrize(("allocation", "expected_mismatch"), [
    ("allocation: {gpu: {type: a100-80gb, count: 2}, vcpus: 8, memory_gib: 64}", 1.0),
    ("allocation: {gpu: {type: a100-80gb}, vcpus: 8, memory_gib: 64}", 1.0),
    ("pricing: {provider: aws}\nallocation: {instance: {type: p4de.24xlarge, share: 0.125}}", 1.0),
    ("allocation: {visible_devices: 'GPU-aaaa', vcpus: 8, memory_gib: 64}", 1.0),
    ("allocation: {vcpus: 8, memory_gib: 64}", 0.0),  # a CPU-only pod expects no GPU
])
def test_nvml_hidden_by_the_runtime_is_named_with_its_cause_and_fix(tmp_path, clock, fake_nvml, caplog, allocation,
                                                                    expected_mismatch):
    fake_nvml.write("init 12")  # NVML_ERROR_LIBRARY_NOT_FOUND: what an unprivileged container on Bottlerocket gets
    with caplog.at_level(logging.ERROR):
        runtime = runtime_for(tmp_path, clock, allocation + "\n", {"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
        for _ in range(3):
            clock.advance(60)
            runtime.tick()
    assert value(runtime, "mlcost_exporter_gpu_mismatch", {"source": "nvml"}) == expected_mismatch
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    if expected_mismatch:
        (line,) = lines  # once, not on every tick
        assert "the nvml GPU source sees none" in line and "Bottlerocket" in line
        assert "visible-devices-envvar-when-unprivileged" in line and "gpu.source: dcgm" in line
    else:
        assert lines == []
    runtime.close()


def test_a_reload_to_another_gpu_source_switches_sources(tmp_path, clock, fake_nvml, exporter):
    runtime = runtime_for(tmp_path, clock, "allocation: {vcpus: 8, memory_gib: 64}\n",
                          {**VLLM_POD, "NODE_IP": "127.0.0.1"})
    assert value(runtime, "mlcost_exporter_source_up", {"source": "nvml"}) is not None
    (tmp_path / "pricing.yaml").write_text(DCGM_CONFIG.replace("PORT", str(exporter.port)))
    assert runtime.reload()
    runtime.tick()
    assert value(runtime, "mlcost_exporter_source_up", {"source": "dcgm"}) == 1.0
    assert [g.uuid for g in runtime.sampler.last_gpu.gpus] == [GPU0]
    runtime.close()
