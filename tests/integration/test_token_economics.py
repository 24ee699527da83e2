"""Token economics end to end through the runtime: real fixtures, the fake NVML, hand-computed dollars.

The pod costs $3.60 an hour (one A100 at an overridden $3.60, nothing else), so
every 60 s interval costs exactly $0.06 and each expected value below is
worked out by hand from the fixture's counter deltas.
"""

from __future__ import annotations

import textwrap
from string import Template

import pytest
from prometheus_client import generate_latest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime
from tests.conftest import A100, FIXTURES, GIB

TOKENS = FIXTURES / "tokens"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA = {"model": "llama", "version": "latest"}
INTERVAL_USD = 0.06
# Counter values at the baseline fetch and after one interval.
START = {"requests": 10, "prompt": 5000, "cached": 1000, "generation": 2000, "prefill": 3.0, "decode": 7.0}
STEP = {"requests": 20, "prompt": 10000, "cached": 4000, "generation": 3000, "prefill": 10.0, "decode": 30.0}


def config(preset: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        pricing:
          provider: onprem
          overrides: {{gpu_hourly_usd: 3.6, vcpu_hourly_usd: 0, memory_gib_hourly_usd: 0}}
          onprem: {{power_usd_per_kwh: 0}}
        allocation: {{gpu: {{type: a100-80gb, count: 1}}, vcpus: 1, memory_gib: 1}}
        models:
          - name: llama
            server: {{preset: {preset}, url: "http://server/metrics", model: "{MODEL}"}}
        collection: {{interval_seconds: 60, cost_window_seconds: 300}}
    """) + textwrap.dedent(extra)


def server_text(preset: str, steps: int) -> str:
    values = {k: START[k] + steps * STEP[k] for k in START}
    return Template((TOKENS / f"{preset}.txt").read_text()).substitute(values)


def litellm_text(tenants: dict[str, tuple[int, int]], tenant_label: str = "team_alias") -> str:
    def line(metric: str, tenant: str, value: int) -> str:
        labels = {"api_key_alias": f"{tenant}-key", "end_user": "None", "hashed_api_key": f"h{tenant}",
                  "model": f"hosted_vllm/{MODEL}", "requested_model": "llama-8b", "team": "4f1c",
                  "team_alias": "search", "user": "alice", tenant_label: tenant}
        return metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + f"}} {value}.0"
    return Template((TOKENS / "litellm.txt").read_text()).substitute(
        input="\n".join(line("litellm_input_tokens_metric_total", t, v[0]) for t, v in tenants.items()),
        output="\n".join(line("litellm_output_tokens_metric_total", t, v[1]) for t, v in tenants.items()))


def envoy_text(tenants: dict[str, tuple[int, int]]) -> str:
    def lines(tenant: str, kind: str, value: int) -> str:
        labels = (f'gen_ai_operation_name="chat",gen_ai_original_model="llama-8b",gen_ai_provider_name="openai",'
                  f'gen_ai_request_model="llama-8b",gen_ai_response_model="llama-8b",gen_ai_token_type="{kind}",'
                  f'otel_scope_name="envoyproxy/ai-gateway",user_id="{tenant}"')
        return (f'gen_ai_client_token_usage_bucket{{{labels},le="+Inf"}} 3\n'
                f"gen_ai_client_token_usage_sum{{{labels}}} {value}\n"
                f"gen_ai_client_token_usage_count{{{labels}}} 3")
    series = [lines(t, kind, v[i]) for t, v in tenants.items() for i, kind in enumerate(("input", "output"))]
    return Template((TOKENS / "envoy-ai-gateway.txt").read_text()).substitute(series="\n".join(series))


def make_runtime(tmp_path, clock, fake_nvml, text: str, bodies: dict[str, list[str]]) -> Runtime:
    fake_nvml.write("init 0", f"gpu 0 80 {40 * GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}")
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    feeds = {url: iter(texts) for url, texts in bodies.items()}
    return Runtime(str(path), frozenset({"gpu", "server"}), Clocks(clock.wall, clock.monotonic), environ={},
                   cgroup_root=tmp_path, server_fetch=lambda url: next(feeds[url]))


def run_intervals(runtime: Runtime, clock, intervals: int) -> None:
    runtime.tick()  # the baseline fetch: a zero-length interval
    for _ in range(intervals):
        clock.advance(60)
        runtime.tick()


# (preset, prefill dollars of one interval, cached tokens priced) worked out by hand:
# vLLM and TGI time the phases: 10 s prefill, 30 s decode -> 1/4 of $0.06 is prefill.
# SGLang reports no phase time: 6,000 computed prompt tokens x 1 against 3,000 generated x 4 -> 1/3.
PHASE_CASES = [("vllm", 0.015, True), ("tgi", 0.015, False), ("sglang", 0.02, True)]


@pytest.mark.parametrize(("preset", "prefill_usd", "has_cache"), PHASE_CASES)
def test_phase_split_cost_per_1m_and_cache_savings_match_hand_computed_values(
        tmp_path, clock, fake_nvml, preset, prefill_usd, has_cache):
    runtime = make_runtime(tmp_path, clock, fake_nvml, config(preset),
                           {"http://server/metrics": [server_text(preset, s) for s in range(2)]})
    run_intervals(runtime, clock, 1)
    value = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    decode_usd = INTERVAL_USD - prefill_usd
    assert value("mlcost_phase_usd_total", {**LLAMA, "phase": "prefill"}) == pytest.approx(prefill_usd)
    assert value("mlcost_phase_usd_total", {**LLAMA, "phase": "decode"}) == pytest.approx(decode_usd)
    model_usd = sum(value("mlcost_usd_total", {**LLAMA, "workload": "inference", "resource": r}) or 0.0
                    for r in ("gpu", "cpu", "memory", "fixed"))
    assert model_usd == pytest.approx(INTERVAL_USD)  # the phases split the ledger's dollars, no more, no less
    assert value("mlcost_phase_cost_per_1m_tokens_usd", {**LLAMA, "phase": "prefill"}) == \
        pytest.approx(prefill_usd / 10000 * 1e6)
    assert value("mlcost_phase_cost_per_1m_tokens_usd", {**LLAMA, "phase": "decode"}) == \
        pytest.approx(decode_usd / 3000 * 1e6)
    assert value("mlcost_cost_per_1m_tokens_usd", LLAMA) == pytest.approx(INTERVAL_USD / 13000 * 1e6)
    if has_cache:
        # 4,000 of 10,000 prompt tokens were cached; a computed prompt token costs prefill / 6,000.
        assert value("mlcost_prompt_cache_hit_ratio", LLAMA) == pytest.approx(0.4)
        assert value("mlcost_prompt_cached_tokens_total", LLAMA) == 4000
        assert value("mlcost_prompt_cache_savings_usd_total", LLAMA) == pytest.approx(4000 * prefill_usd / 6000)
    else:
        assert value("mlcost_prompt_cache_hit_ratio", LLAMA) == 0.0
        assert value("mlcost_prompt_cache_savings_usd_total", LLAMA) is None
    runtime.close()


def test_an_interval_without_tokens_is_split_as_the_model_last_ran_and_cost_per_1m_goes_absent(
        tmp_path, clock, fake_nvml):
    texts = [server_text("vllm", 0), server_text("vllm", 1)] + [server_text("vllm", 1)] * 6
    runtime = make_runtime(tmp_path, clock, fake_nvml, config("vllm"), {"http://server/metrics": texts})
    run_intervals(runtime, clock, 2)
    value = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    assert value("mlcost_phase_usd_total", {**LLAMA, "phase": "prefill"}) == pytest.approx(2 * 0.015)
    assert value("mlcost_phase_usd_total", {**LLAMA, "phase": "decode"}) == pytest.approx(2 * 0.045)
    for _ in range(5):  # the cost window (300 s) passes without a token
        clock.advance(60)
        runtime.tick()
    value = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    assert value("mlcost_cost_per_1m_tokens_usd", LLAMA) is None
    assert value("mlcost_phase_cost_per_1m_tokens_usd", {**LLAMA, "phase": "prefill"}) is None
    assert value("mlcost_phase_usd_total", {**LLAMA, "phase": "decode"}) == pytest.approx(7 * 0.045)
    runtime.close()


def test_without_phase_timing_or_tokens_nothing_is_split(tmp_path, clock, fake_nvml):
    text = config("triton").replace(f'model: "{MODEL}"', "model: resnet50")
    triton = (FIXTURES / "servers" / "triton.txt").read_text()
    runtime = make_runtime(tmp_path, clock, fake_nvml, text, {"http://server/metrics": [triton] * 3})
    run_intervals(runtime, clock, 2)
    output = generate_latest(build_registry(runtime.state, runtime.clocks.monotonic)).decode()
    assert "mlcost_phase_usd_total{" not in output and "mlcost_cost_per_1m_tokens_usd{" not in output
    runtime.close()


TENANT_CONFIG = """
    tenants:
      max_tenants: 10
      gateways:
        - {{preset: {preset}, url: "http://gateway/metrics", models: {{llama: llama-8b}}}}
    budgets:
      - {{name: tenant-b, amount_usd: 100, period: day, selector: {{tenants: [b]}}}}
"""
# Gateway counters per tenant (input, output) at each fetch. Shares change between intervals:
# interval 1: a sent 3,000 of 4,000 input and 1,000 of 2,000 output tokens; interval 2: only b;
# interval 3: no tokens at all.
TENANT_FEEDS = [{"a": (1000, 500), "b": (1000, 500)}, {"a": (4000, 1500), "b": (2000, 1500)},
                {"a": (4000, 1500), "b": (4000, 2500)}, {"a": (4000, 1500), "b": (4000, 2500)}]
SERVER_STEPS = [0, 1, 2, 2]  # the server counts tokens in intervals 1 and 2 only


@pytest.mark.parametrize("preset", ["litellm", "envoy-ai-gateway"])
def test_tenants_pay_by_each_intervals_token_shares_and_every_dollar_once(tmp_path, clock, fake_nvml, preset):
    render = litellm_text if preset == "litellm" else envoy_text
    runtime = make_runtime(tmp_path, clock, fake_nvml, config("vllm", TENANT_CONFIG.format(preset=preset)), {
        "http://server/metrics": [server_text("vllm", s) for s in SERVER_STEPS],
        "http://gateway/metrics": [render(feed) for feed in TENANT_FEEDS]})
    run_intervals(runtime, clock, 3)
    value = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    # Interval 1: prefill $0.015 by input shares (3/4, 1/4), decode $0.045 by output shares (1/2, 1/2).
    a = 0.015 * 3 / 4 + 0.045 / 2
    b = 0.015 / 4 + 0.045 / 2 + INTERVAL_USD  # and all of interval 2
    assert value("mlcost_tenant_usd_total", {**LLAMA, "tenant": "a"}) == pytest.approx(a)
    assert value("mlcost_tenant_usd_total", {**LLAMA, "tenant": "b"}) == pytest.approx(b)
    assert value("mlcost_tenant_usd_total", {**LLAMA, "tenant": "unattributed"}) == pytest.approx(INTERVAL_USD)
    assert value("mlcost_tenant_tokens_total", {**LLAMA, "tenant": "b", "kind": "prompt"}) == 3000
    assert value("mlcost_budget_spend_usd_total", {"budget": "tenant-b", "period": "2026-11-16"}) == \
        pytest.approx(b)
    assert value("mlcost_exporter_source_up", {"source": "gateway:http://gateway/metrics"}) == 1.0
    runtime.close()


def test_a_tenant_explosion_stays_bounded_in_series_and_memory(tmp_path, clock, fake_nvml):
    import tracemalloc

    keys = 100_000

    def explosion(step: int) -> str:
        lines = [f'litellm_input_tokens_metric_total{{hashed_api_key="{i:064x}",requested_model="llama-8b",'
                 f'team_alias="None"}} {(i % 97 + 1) * (step + 1)}' for i in range(keys)]
        return "\n".join(["# TYPE litellm_input_tokens_metric_total counter", *lines]) + "\n"

    extra = """
        tenants:
          max_tenants: 50
          gateways:
            - {preset: litellm, url: "http://gateway/metrics", tenant_label: hashed_api_key, models: {llama: llama-8b}}
    """
    bodies = [explosion(0), explosion(1)]
    # Reading 100,000 series under tracemalloc takes seconds: a deadline long enough that the tick waits for it.
    text = config("vllm", extra).replace("interval_seconds: 60,", "interval_seconds: 60, server_timeout_seconds: 60,")
    runtime = make_runtime(tmp_path, clock, fake_nvml, text, {
        "http://server/metrics": [server_text("vllm", s) for s in range(2)],
        "http://gateway/metrics": bodies})
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run_intervals(runtime, clock, 1)
    bodies.clear()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    registry = build_registry(runtime.state, runtime.clocks.monotonic)
    tenants = [s for m in registry.collect() if m.name == "mlcost_tenant_usd" for s in m.samples
               if s.name == "mlcost_tenant_usd_total"]
    assert len(tenants) == 51  # 50 tracked tenants and "other"
    assert sum(s.value for s in tenants) == pytest.approx(INTERVAL_USD)
    assert registry.get_sample_value("mlcost_exporter_tenants_tracked") == 50
    source = runtime.sampler.gateway_sources["http://gateway/metrics"]
    assert source.last_reading.series == 10_000  # collection.max_series_per_source
    assert registry.get_sample_value("mlcost_exporter_dropped_series_total",
                                     {"source": "gateway:http://gateway/metrics"}) == 2 * (keys - 10_000)
    assert retained < 16 * 1024 * 1024, f"{retained} bytes retained after a 100,000-key explosion"
    runtime.close()


def test_a_reload_keeps_tenant_totals_and_gateway_counter_history(tmp_path, clock, fake_nvml):
    text = config("vllm", TENANT_CONFIG.format(preset="litellm"))
    runtime = make_runtime(tmp_path, clock, fake_nvml, text, {
        "http://server/metrics": [server_text("vllm", s) for s in SERVER_STEPS],
        "http://gateway/metrics": [litellm_text(feed) for feed in TENANT_FEEDS]})
    run_intervals(runtime, clock, 1)
    (tmp_path / "pricing.yaml").write_text(text.replace("max_tenants: 10", "max_tenants: 20"))
    assert runtime.reload()
    clock.advance(60)
    runtime.tick()  # b's 2,000 new input tokens are a delta against the history kept over the reload
    value = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    assert value("mlcost_exporter_tenants_limit") == 20
    assert value("mlcost_tenant_usd_total", {**LLAMA, "tenant": "b"}) == \
        pytest.approx(0.015 / 4 + 0.045 / 2 + INTERVAL_USD)
    runtime.close()
