"""Honest health: a reading that cannot be used says so (source down, with the reason in the log), and a
failing source never reprices what it stopped seeing."""

from __future__ import annotations

import logging

import pytest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime
from tests.conftest import A100, GIB

NOT_METRICS = {
    "an HTML login page": "<!DOCTYPE html><html><body>Sign in</body></html>",
    "an HTML page after blank lines": "\n\n  <html><head><title>502</title></head></html>",
    "a JSON error": '{"error": "unauthorized"}',
}


def runtime_with(tmp_path, clock, bodies: dict[str, str], extra: str = "") -> Runtime:
    path = tmp_path / "pricing.yaml"
    path.write_text("allocation: {vcpus: 4, memory_gib: 16}\n"
                    "models: [{name: m, server: {preset: vllm, url: 'http://server/metrics'}}]\n"
                    "tenants: {gateways: [{preset: litellm, url: 'http://gateway/metrics', models: {m: m}}]}\n"
                    + extra)
    return Runtime(str(path), frozenset({"server"}), Clocks(clock.wall, clock.monotonic), environ={},
                   cgroup_root=tmp_path, server_fetch=lambda url: bodies[url])


@pytest.mark.parametrize("body", sorted(NOT_METRICS))
@pytest.mark.parametrize("where", ["server", "gateway"])
def test_a_page_that_is_not_metrics_is_a_source_down_not_a_server_with_no_traffic(tmp_path, clock, caplog,
                                                                                  body, where):
    good = 'vllm:request_success_total{finished_reason="stop",model_name="m"} 5\n'
    bodies = {"http://server/metrics": good, "http://gateway/metrics": "litellm_input_tokens_metric_total 0\n"}
    bodies[f"http://{where}/metrics"] = NOT_METRICS[body]
    runtime = runtime_with(tmp_path, clock, bodies)
    with caplog.at_level(logging.WARNING):
        runtime.tick()
    up = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    assert up("mlcost_exporter_source_up", {"source": f"{where}:http://{where}/metrics"}) == 0.0
    other = "gateway" if where == "server" else "server"
    assert up("mlcost_exporter_source_up", {"source": f"{other}:http://{other}/metrics"}) == 1.0
    assert any("not metrics" in r.getMessage() or "not the Prometheus" in r.getMessage() for r in caplog.records)
    runtime.close()


def test_a_deleted_config_file_is_noticed_and_the_last_good_config_stays(tmp_path, clock):
    runtime = runtime_with(tmp_path, clock, {})
    (tmp_path / "pricing.yaml").unlink()
    runtime.check_config_changed()
    state = runtime.state()
    assert state.reload.successful is False and [m.name for m in state.config.models] == ["m"]
    (tmp_path / "pricing.yaml").write_text("allocation: {vcpus: 4, memory_gib: 16}\nmodels: [{name: back}]\n")
    runtime.check_config_changed()
    assert runtime.reload() and runtime.state().reload.successful is True
    runtime.close()


@pytest.mark.parametrize("failure", [
    ("init 0", f"gpu 0 50 {GIB} {80 * GIB} 300000 1 0 GPU-aaaa {A100}"),  # the GPU is lost
    ("init 0", "hang 2500", f"gpu 0 50 {GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}"),  # NVML hangs past its deadline
])
def test_a_discovered_gpu_keeps_its_price_while_its_source_fails(tmp_path, clock, fake_nvml, failure):
    fake_nvml.write("init 0", f"gpu 0 50 {GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}")
    path = tmp_path / "pricing.yaml"
    path.write_text("pricing: {provider: aws}\nallocation: {vcpus: 4, memory_gib: 16}\n")  # the GPU is discovered
    runtime = Runtime(str(path), frozenset({"gpu"}), Clocks(clock.wall, clock.monotonic), environ={},
                      cgroup_root=tmp_path)
    priced = runtime.rates.gpu_usd_per_hour
    assert priced > 0 and runtime.rates.allocation.gpus == 1
    fake_nvml.write(*failure)
    clock.advance(60)
    runtime.tick()
    assert runtime.state().sampling.steps["gpu"].success is False
    assert runtime.rates.gpu_usd_per_hour == priced  # not repriced from an empty reading
    runtime.close()
