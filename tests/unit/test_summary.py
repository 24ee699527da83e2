"""The start-up summary says what is priced, where each figure came from, and warns of a GPU it cannot read."""

from __future__ import annotations

import logging

from ml_cost_exporter.runtime import Clocks, Runtime
from ml_cost_exporter.summary import gpu_warning, summary


def runtime(tmp_path, clock, text: str, enabled=frozenset()) -> Runtime:
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    return Runtime(str(path), enabled, Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path)


def test_a_gpu_only_config_prices_the_gpus_host_share_and_says_so(tmp_path, clock):
    rt = runtime(tmp_path, clock, "pricing: {provider: aws}\nallocation: {gpu: {type: l4, count: 1}}\n")
    allocation = rt.rates.allocation
    assert (allocation.vcpus, allocation.memory_gib) == (4, 16)  # g6.xlarge's host, not the machine's
    total = sum(rt.rates.static_usd_per_hour().values())
    instance = rt.config.catalog.providers["aws"].instances["g6.xlarge"].hourly_usd
    assert abs(total - instance) < 1e-9  # the pod costs what the GPU's instance costs, nothing more
    first = summary(rt.state())[0]
    assert "1 x l4 GPU (config)" in first and "4 vCPUs (the GPU's share of g6.xlarge)" in first
    assert "at aws on_demand prices" in first and "an hour" in first
    rt.close()


def test_limits_come_from_the_cgroup_where_it_sets_them_and_the_summary_names_each_source(tmp_path, clock):
    (tmp_path / "cpu.max").write_text("200000 100000")
    (tmp_path / "memory.max").write_text(str(8 * 1024**3))
    rt = runtime(tmp_path, clock, "pricing: {provider: aws}\nallocation: {gpu: {type: l4, count: 1}}\n"
                 "models: [{name: chat, server: {preset: vllm, url: 'http://v/metrics'}}]\n"
                 "budgets: [{name: daily, amount_usd: 0.05, period: day, selector: {models: [chat]}}]\n")
    lines = summary(rt.state())
    assert "2 vCPUs (cgroup limit) and 8 GiB memory (cgroup limit)" in lines[0]
    assert lines[1] == "models: chat latest from vllm at http://v/metrics; budgets: daily $0.050 a day"
    rt.close()


def test_a_gpu_source_that_finds_nothing_is_a_warning_naming_what_to_do(tmp_path, clock, caplog):
    rt = runtime(tmp_path, clock, "allocation: {vcpus: 2, memory_gib: 4}\n", enabled=frozenset({"gpu"}))
    with caplog.at_level(logging.INFO):
        rt.tick()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("no GPU found by nvml") and "pricing CPU and memory only" in w for w in warnings)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(line.startswith("pricing no GPU, 2 vCPUs (config)") for line in infos)
    assert gpu_warning(rt.state(), {"KUBERNETES_SERVICE_HOST": "x"}).endswith("(k8s/components/sidecar-dcgm)")
    rt.close()
