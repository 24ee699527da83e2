"""Storage and egress through the whole exporter, against a hand computation: a pod holding a 500 GiB gp3
volume (its size read with statfs) and a 100 GiB io2 volume (its size given), sending a known number of bytes
on eth0 (a fake sysfs tree; loopback excluded), priced at AWS's internet tier for 20,000 GiB a month. The
saved output is one of the expected outputs docs/metrics.md is generated from."""

import os

import pytest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, HostPaths, Runtime
from tests.conftest import FIXTURES, GIB
from tests.integration.exposition.test_collectors import matches_golden, render, triton_text, vllm_text

GOLDEN = FIXTURES / "golden" / "bill-metrics.txt"
CONFIG = """
pricing: {provider: aws}
allocation: {vcpus: 4, memory_gib: 16}
attribution: compute_time
models:
  - name: llama
    version: v1
    server: {preset: vllm, url: "http://server/metrics", model: "meta-llama/Llama-3.1-8B-Instruct"}
  - name: reranker
    version: v7
    server: {preset: triton, url: "http://triton/metrics", model: resnet50}
storage:
  volumes:
    - {name: model-cache, class: gp3, path: /models}
    - {name: scratch, class: io2, size_gib: 100}
    - {name: archive, class: gp9, size_gib: 10}
network: {destination: internet, monthly_internet_gib: 20000}
tenants:
  gateways:
    - preset: litellm
      url: http://gateway/metrics
      models: {llama: llama-8b}
      hosted_spend: true
      self_hosted_models: [hosted_vllm/llama]
budgets:
  - {name: api-monthly, amount_usd: 1000, selector: {models: [reranker], hosted_models: [gpt-4o-mini]}}
collection: {interval_seconds: 60}
"""
CACHE_BLOCKS = 500 * GIB // 4096  # a 500 GiB filesystem in 4 KiB blocks
ETH0 = [10**9, 10**9 + 3 * GIB, 10**9 + 8 * GIB]  # tx_bytes at each tick: 3 GiB, then 5 GiB sent
LO = [5 * 10**9, 9 * 10**9, 20 * 10**9]  # loopback traffic, never priced


def litellm_spend(mini_a: float, mini_b: float, haiku: float, llama: float) -> str:
    """LiteLLM's spend counter: two teams on gpt-4o-mini, one on claude-haiku-4-5, and the self-hosted llama
    twice (mapped to a configured model, and through a self-hosted deployment name): both ignored."""
    series = [("gpt-4o-mini", "a", mini_a), ("gpt-4o-mini", "b", mini_b), ("claude-haiku-4-5", "a", haiku),
              ("llama-8b", "a", llama), ("hosted_vllm/llama", "a", llama)]
    lines = ["# TYPE litellm_spend_metric_total counter"]
    lines += [f'litellm_spend_metric_total{{end_user="",hashed_api_key="88dc28",api_key_alias="",model="{m}",'
              f'team="{t}",team_alias="{t}",user=""}} {v}' for m, t, v in series]
    return "\n".join(lines) + "\n"


# gpt-4o-mini +0.6 then, after team a's counter reset to 0.2, +0.2 and team b +0.4: $1.20; haiku +$0.25.
SPEND = [litellm_spend(1.0, 0.5, 2.0, 7.0), litellm_spend(1.6, 0.5, 2.25, 9.0), litellm_spend(0.2, 0.9, 2.25, 30.0)]


def fake_statfs(path: str) -> os.statvfs_result:
    assert path.endswith("/models"), path
    return os.statvfs_result((4096, 4096, CACHE_BLOCKS, 0, 0, 0, 0, 0, 0, 255))


def write_counters(sysfs, step: int) -> None:
    for name, series in (("eth0", ETH0), ("lo", LO)):
        stats = sysfs / "class" / "net" / name / "statistics"
        stats.mkdir(parents=True, exist_ok=True)
        (stats / "tx_bytes").write_text(f"{series[step]}\n")


@pytest.fixture
def bill_runtime(tmp_path, clock):
    path = tmp_path / "pricing.yaml"
    path.write_text(CONFIG)
    (tmp_path / "cpu.max").write_text("max 100000")
    sysfs = tmp_path / "sys"
    feeds = {"http://server/metrics": iter([vllm_text(1200), vllm_text(1800), vllm_text(2400)]),
             "http://triton/metrics": iter([triton_text(420), triton_text(720), triton_text(1020)]),
             "http://gateway/metrics": iter(SPEND)}
    rt = Runtime(str(path), frozenset({"server", "storage", "network"}), Clocks(clock.wall, clock.monotonic),
                 environ={}, cgroup_root=tmp_path, server_fetch=lambda url: next(feeds[url]),
                 host=HostPaths(sysfs=sysfs, procfs=tmp_path / "proc", root=tmp_path, statfs=fake_statfs))
    for step in range(3):
        write_counters(sysfs, step)
        rt.tick()
        clock.advance(60)
    yield rt
    rt.close()


def test_bill_pod_metrics_match_the_saved_expected_output(bill_runtime, update_golden):
    text = render(bill_runtime)
    matches_golden(text, GOLDEN, update_golden)


def test_storage_and_egress_cost_match_a_hand_computation(bill_runtime):
    value = build_registry(bill_runtime.state, bill_runtime.clocks.monotonic).get_sample_value
    llama = {"model": "llama", "version": "v1", "workload": "inference"}
    reranker = {"model": "reranker", "version": "v7", "workload": "inference"}

    def total(resource: str) -> float:
        return sum(value("mlcost_usd_total", {**m, "resource": resource}) for m in (llama, reranker))

    # Two 60 s intervals of 500 GiB gp3 at $0.08 and 100 GiB io2 at $0.125 a GiB-month of 730 h.
    storage = (500 * 0.08 + 100 * 0.125) / 730 * 120 / 3600
    assert total("storage") == pytest.approx(storage, rel=1e-9)
    # 8 GiB sent on eth0 at $0.085 a GiB (the 10-50 TiB tier); loopback's 15 GB are not egress.
    assert total("network") == pytest.approx(8 * 0.085, rel=1e-9)
    # Egress follows requests even under compute-time attribution: llama served 600 of 900 each interval.
    assert value("mlcost_usd_total", {**llama, "resource": "network"}) == pytest.approx(8 * 0.085 * 2 / 3, rel=1e-9)
    assert value("mlcost_network_transmit_bytes_total") == 8 * GIB
    assert value("mlcost_volume_size_bytes", {"volume": "model-cache", "class": "gp3"}) == 500 * GIB
    assert value("mlcost_volume_size_bytes", {"volume": "scratch", "class": "io2"}) == 100 * GIB
    # The unknown class is unpriced at every tick, and the rest of the cost is unaffected by it.
    assert value("mlcost_exporter_unpriced_total", {"source": "volume:archive", "reason": "unknown_class"}) == 3
    assert value("mlcost_exporter_collector_success", {"collector": "network"}) == 1.0
    assert value("mlcost_exporter_source_up", {"source": "volumes"}) == 1.0


def test_hosted_spend_is_brought_in_once_and_counts_toward_its_budget(bill_runtime):
    value = build_registry(bill_runtime.state, bill_runtime.clocks.monotonic).get_sample_value
    assert value("mlcost_hosted_usd_total", {"model": "gpt-4o-mini"}) == pytest.approx(1.2, rel=1e-12)
    assert value("mlcost_hosted_usd_total", {"model": "claude-haiku-4-5"}) == pytest.approx(0.25, rel=1e-12)
    # The self-hosted model's spend, under its gateway name or its deployment's, is not counted again.
    assert value("mlcost_hosted_usd_total", {"model": "llama-8b"}) is None
    assert value("mlcost_hosted_usd_total", {"model": "hosted_vllm/llama"}) is None
    reranker = sum(value("mlcost_usd_total", {"model": "reranker", "version": "v7", "workload": "inference",
                                               "resource": r}) for r in ("cpu", "memory", "fixed", "storage",
                                                                         "network"))
    assert value("mlcost_budget_spend_usd_total", {"budget": "api-monthly", "period": "2026-11"}) == \
        pytest.approx(reranker + 1.2, rel=1e-9)


def test_the_saved_output_has_the_bill_families():
    text = GOLDEN.read_text()
    for name in ("mlcost_volume_size_bytes", "mlcost_network_transmit_bytes_total",
                 "mlcost_exporter_unpriced_total", 'resource="storage"', 'resource="network"',
                 "mlcost_hosted_usd_total"):
        assert name in text
