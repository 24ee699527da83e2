"""The saved expected /metrics of a gateway-fronted pod with a checkpoint: tenants, the DCGM-free GPU
source, the checkpoint's health. With the inference and training pods' outputs, every family the
collectors can emit appears in one saved output (docs/metrics.md is generated from them)."""

from ml_cost_exporter.runtime import Clocks, Runtime
from tests.conftest import FIXTURES
from tests.integration.exposition.test_collectors import matches_golden, render
from tests.integration.test_token_economics import (
    SERVER_STEPS,
    TENANT_CONFIG,
    TENANT_FEEDS,
    config,
    litellm_text,
    server_text,
)

GOLDEN = FIXTURES / "golden" / "tenant-metrics.txt"


def test_gateway_pod_metrics_match_the_saved_expected_output(tmp_path, clock, fake_nvml, update_golden):
    from tests.conftest import A100, GIB

    fake_nvml.write("init 0", f"gpu 0 80 {40 * GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}")
    path = tmp_path / "pricing.yaml"
    path.write_text(config("vllm", TENANT_CONFIG.format(preset="litellm")))
    feeds = {"http://server/metrics": iter([server_text("vllm", s) for s in SERVER_STEPS]),
             "http://gateway/metrics": iter([litellm_text(feed) for feed in TENANT_FEEDS])}
    rt = Runtime(str(path), frozenset({"gpu", "server"}), Clocks(clock.wall, clock.monotonic), environ={},
                 cgroup_root=tmp_path, server_fetch=lambda url: next(feeds[url]),
                 storage_path=str(tmp_path / "state"))
    try:
        for _ in range(3):
            rt.tick()
            clock.advance(60)
        text = render(rt)
    finally:
        rt.close()
    matches_golden(text, GOLDEN, update_golden)
