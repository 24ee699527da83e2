"""A server or gateway that reports absurd counters never poisons the books or the checkpoint.

Each class of poison (values no counter holds, leaps no server makes, series that churn
through label values with huge values, a counter that drops and climbs back) is fed between
honest samples of a vLLM server and a LiteLLM gateway. The books stay finite, the requests
and tokens counted equal the honest traffic's exactly (a drop-and-climb is bounded by the
plausible rate), every checkpoint write succeeds, and each refusal is counted by reason.
"""

from __future__ import annotations

import math

import pytest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime

MODEL = "m"
TICKS = 8
RATE = 10  # honest requests a second
POISONED_TICKS = (3, 5)
CONFIG = f"""
allocation: {{vcpus: 4, memory_gib: 16}}
models: [{{name: {MODEL}, server: {{preset: vllm, url: "http://server/metrics"}}}}]
tenants:
  gateways: [{{preset: litellm, url: "http://gateway/metrics", tenant_label: team_alias, models: {{{MODEL}: {MODEL}}}}}]
collection: {{interval_seconds: 60, cost_window_seconds: 600}}
"""


def server_page(requests: str, extra: str = "") -> str:
    return ("# TYPE vllm:request_success counter\n"
            f'vllm:request_success_total{{finished_reason="stop",model_name="{MODEL}"}} {requests}\n'
            f'vllm:prompt_tokens_total{{model_name="{MODEL}"}} {requests}\n' + extra)


def gateway_page(tokens: str, extra: str = "") -> str:
    return ("# TYPE litellm_input_tokens_metric counter\n"
            f'litellm_input_tokens_metric_total{{requested_model="{MODEL}",team_alias="search"}} {tokens}\n' + extra)


def honest(tick: int) -> int:
    return RATE * 60 * tick


# Each poison: what the server (and the gateway) report at a poisoned tick, and the reasons it must be refused with.
POISONS = {
    "largest float": (lambda t: "1.797e308", "", {"too_large"}),
    "infinite": (lambda t: "+Inf", "", {"non_finite"}),
    "not a number": (lambda t: "NaN", "", {"non_finite"}),
    "negative": (lambda t: "-5", "", {"negative"}),
    "garbage": (lambda t: "12abc", "", {"malformed"}),
    "leap": (lambda t: str(honest(t) + 10**12), "", {"implausible_increase"}),
    "churning label values": (
        lambda t: str(honest(t)),
        "".join(f'vllm:request_success_total{{finished_reason="stop",model_name="{MODEL}",churn="{i}"}} 9e9\n'
                for i in range(50)),
        {"implausible_increase"}),
}


def run(tmp_path, clock, pages: list[tuple[str, str]]) -> Runtime:
    path = tmp_path / "pricing.yaml"
    path.write_text(CONFIG)
    feeds = {"http://server/metrics": iter(p[0] for p in pages), "http://gateway/metrics": iter(p[1] for p in pages)}
    runtime = Runtime(str(path), frozenset({"server"}), Clocks(clock.wall, clock.monotonic), environ={},
                      cgroup_root=tmp_path, server_fetch=lambda url: next(feeds[url]),
                      storage_path=str(tmp_path / "state"))
    for _ in pages:
        runtime.tick()
        clock.advance(60)
    return runtime


def books(runtime: Runtime) -> dict[str, float | None]:
    value = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value
    labels = {"model": MODEL, "version": "latest"}
    return {"requests": value("mlcost_requests_total", labels),
            "prompt": value("mlcost_tokens_total", {**labels, "kind": "prompt"}),
            "per_1k": value("inference_cost_per_1k_usd", labels),
            "tenant_tokens": value("mlcost_tenant_tokens_total", {**labels, "tenant": "search", "kind": "input"}),
            "usd": sum(s.value for m in build_registry(runtime.state).collect() if m.name == "mlcost_usd"
                       for s in m.samples if s.name == "mlcost_usd_total")}


@pytest.fixture
def honest_books(tmp_path, clock):
    runtime = run(tmp_path, clock, [(server_page(str(honest(t))), gateway_page(str(honest(t))))
                                    for t in range(TICKS)])
    try:
        return books(runtime)
    finally:
        runtime.close()


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_counter_is_refused_and_the_books_equal_the_honest_traffic(tmp_path, clock, honest_books,
                                                                             poison):
    value_at, extra, reasons = POISONS[poison]
    pages = [(server_page(value_at(t), extra), gateway_page(value_at(t), extra.replace(
        "vllm:request_success_total", "litellm_input_tokens_metric_total"))) if t in POISONED_TICKS
             else (server_page(str(honest(t))), gateway_page(str(honest(t)))) for t in range(TICKS)]
    (tmp_path / "poisoned").mkdir()
    runtime = run(tmp_path / "poisoned", clock, pages)
    try:
        poisoned = books(runtime)
        registry = build_registry(runtime.state, runtime.clocks.monotonic)
        refused = {s.labels["reason"] for m in registry.collect() if m.name == "mlcost_exporter_samples_rejected"
                   for s in m.samples if s.labels["source"] == "server:http://server/metrics" and s.value > 0}
        assert refused == reasons
        assert registry.get_sample_value("mlcost_exporter_checkpoint_write_failures_total") == 0
    finally:
        runtime.close()
    assert all(math.isfinite(v) for v in poisoned.values() if v is not None)
    assert poisoned["requests"] == honest_books["requests"] == honest(TICKS - 1)
    assert poisoned["prompt"] == honest_books["prompt"]
    assert poisoned["tenant_tokens"] == honest_books["tenant_tokens"]
    assert poisoned["per_1k"] == pytest.approx(honest_books["per_1k"], rel=1e-3)
    assert poisoned["usd"] == pytest.approx(honest_books["usd"], rel=1e-9)


def test_a_counter_that_drops_and_climbs_back_inflates_at_most_the_plausible_rate(tmp_path, clock):
    """A drop reads as a restart (as rate() reads it); the climb back counts, but never past the bound."""
    pages = []
    for t in range(TICKS):
        value = 0 if t % 2 else 10**9  # a sawtooth: every rise is a restart worth a billion requests
        pages.append((server_page(str(value)), gateway_page("0")))
    runtime = run(tmp_path, clock, pages)
    try:
        counted = books(runtime)["requests"]
    finally:
        runtime.close()
    assert counted is None or counted <= 1e5 * 60 * TICKS  # the default bound: 100,000 requests a second
