"""Gateway source: per-tenant deltas from LiteLLM's real format, and the faults of a hostile gateway."""

from __future__ import annotations

import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.sources.gateway import GatewaySource
from ml_cost_exporter.sources.server import FetchError

CONFIG = """
models: [{name: llama}]
tenants:
  gateways: [{preset: litellm, url: "http://gw/metrics", models: {llama: llama-8b}}]
"""
KEY = ("llama", "latest")


def line(tenant: str, value: str, model: str = "llama-8b", metric: str = "litellm_input_tokens_metric_total") -> str:
    return (f'{metric}{{api_key_alias="k",end_user="None",hashed_api_key="h",model="hosted_vllm/x",'
            f'requested_model="{model}",team="t",team_alias="{tenant}",user="u"}} {value}')


def source(bodies: list, max_series: int = 1000) -> GatewaySource:
    gateway = parse_config(CONFIG, "test.yaml").tenants.gateways[0]
    feed = iter(bodies)

    def fetch(url: str) -> str:
        body = next(feed)
        if isinstance(body, Exception):
            raise body
        return body

    return GatewaySource(gateway, 1.0, 1 << 20, max_series, 60.0, monotonic=lambda: 0.0, fetch=fetch)


def test_deltas_per_tenant_and_kind_for_mapped_models_only():
    gw = source(["\n".join([line("a", "10"), line("b", "5"), line("a", "7", model="gpt-4o")]),
                 "\n".join([line("a", "25"), line("b", "5"), line("a", "99", model="gpt-4o"),
                            line("a", "4", metric="litellm_output_tokens_metric_total")])])
    assert gw.sample().tokens == {}  # the baseline
    # b unchanged; a's output series is new since the last fetch, so it started from zero.
    assert gw.sample().tokens == {(KEY, "a", "input"): 15.0, (KEY, "a", "output"): 4.0}


def test_a_counter_reset_counts_the_new_value_as_rate_does():
    gw = source([line("a", "100"), line("a", "30")])
    gw.sample()
    assert gw.sample().tokens == {(KEY, "a", "input"): 30.0}


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-3", "1e", "0x10", "--"])
def test_malformed_values_are_counted_and_skipped_and_good_lines_still_count(value):
    gw = source([line("a", "1") + "\n" + line("b", "1"), line("a", value) + "\n" + line("b", "6")])
    gw.sample()
    reading = gw.sample()
    assert reading.ok and reading.invalid_samples == 1
    assert reading.tokens == {(KEY, "b", "input"): 5.0}


def test_malformed_label_blocks_are_counted_and_skipped():
    bad = 'litellm_input_tokens_metric_total{requested_model="llama-8b",team_alias="a" junk} 5'
    gw = source([bad + "\n" + line("b", "1")])
    reading = gw.sample()
    assert reading.ok and reading.invalid_samples == 1 and reading.series == 1


def test_series_over_the_cap_are_dropped_and_counted():
    body = "\n".join(line(f"t{i}", "1") for i in range(50))
    reading = source([body], max_series=20).sample()
    assert reading.series == 20 and reading.dropped_series == 30


def test_a_failing_gateway_reports_not_ok_and_recovers():
    gw = source([FetchError("HTTP 503"), line("a", "1"), line("a", "3")])
    failed = gw.sample()
    assert not failed.ok and "503" in failed.error
    assert gw.sample().ok
    assert gw.sample().tokens == {(KEY, "a", "input"): 2.0}
