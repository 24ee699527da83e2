"""Phase and tenant accumulators: pure splits, and checkpoints validated like hostile input."""

from __future__ import annotations

import json

import pytest

from ml_cost_exporter.config.tokens import TokenWeights
from ml_cost_exporter.cost.ledger import IntervalCost
from ml_cost_exporter.cost.tenants import TenantLedger
from ml_cost_exporter.cost.tokens import TokenEconomics, TokenSignals, prefill_share

KEY = ("llama", "v1")


def interval(usd: float, start: float = 0.0) -> IntervalCost:
    return IntervalCost(start, start + 60, {KEY: {"gpu": usd}}, {KEY: 1.0})


def test_phase_timing_wins_over_weights_and_weights_count_only_computed_prompt_tokens():
    weights = TokenWeights(prompt=1.0, generation=4.0)
    assert prefill_share(TokenSignals(1000, 10, prefill_seconds=1, decode_seconds=3), weights) == 0.25
    # 1,000 prompt tokens of which 600 cached: 400 x 1 against 100 x 4 -> half.
    assert prefill_share(TokenSignals(1000, 100, cached_prompt_tokens=600), weights) == 0.5
    assert prefill_share(TokenSignals(), weights) is None


def test_a_configured_weight_changes_the_split():
    signals = TokenSignals(prompt_tokens=1000, generation_tokens=1000)
    assert prefill_share(signals, TokenWeights(1.0, 1.0)) == 0.5
    assert prefill_share(signals, TokenWeights(1.0, 3.0)) == 0.25


def test_token_state_round_trips_through_json_and_keeps_accruing():
    economics = TokenEconomics([KEY], TokenWeights(), 300)
    economics.record(interval(1.0), {KEY: TokenSignals(1000, 250, 200, 1.0, 3.0)})
    restored = TokenEconomics([KEY], TokenWeights(), 300)
    restored.restore_state(json.loads(json.dumps(economics.export_state())))
    assert restored.snapshot(60).phase_usd_total == economics.snapshot(60).phase_usd_total
    restored.record(interval(1.0, 60), {})  # no activity: split as it last ran (1/4 prefill)
    assert restored.snapshot(120).phase_usd_total[(*KEY, "prefill")] == pytest.approx(0.5)
    assert restored.snapshot(120).cache_savings_usd_total[KEY] == pytest.approx(200 * 0.25 / 800)


def test_tenant_state_round_trips_and_keeps_the_tracked_table():
    ledger = TenantLedger([KEY], max_tenants=1)
    ledger.record(interval(1.0), {}, {(KEY, "a", "input"): 10.0}, [KEY])
    restored = TenantLedger([KEY], max_tenants=1)
    restored.restore_state(json.loads(json.dumps(ledger.export_state())))
    charged = restored.record(interval(1.0, 60), {}, {(KEY, "b", "input"): 10.0}, [KEY])
    assert charged == {KEY: {"other": 1.0}}  # "a" still holds the only slot
    assert restored.snapshot().usd_total[(*KEY, "a")] == 1.0


BAD_TOKEN_STATES = [
    None, [], {"version": 2}, {"version": 1, "phase_usd": "x"}, {"version": 1, "phase_usd": [["m", "v", 1.0]]},
    {"version": 1, "phase_usd": [["m", "v", "warmup", 1.0]]}, {"version": 1, "phase_usd": [["m", "v", "decode", -1]]},
    {"version": 1, "cached_prompt_tokens": [["m", "v", float("nan")]]},
    {"version": 1, "cache_savings_usd": [["m", 1, 2.0]]}, {"version": 1, "prefill_share": [["m", "v", 1.5]]},
    {"version": 1, "prompt_usd_per_token": [["m", "v", True]]},
]
BAD_TENANT_STATES = [
    "x", {"version": 0}, {"version": 1, "tracked": "a"}, {"version": 1, "tracked": [1]},
    {"version": 1, "usd": [["m", "v", "a"]]}, {"version": 1, "usd": [["m", "v", "a", float("inf")]]},
    {"version": 1, "tokens": [["m", "v", "a", "reasoning", 1.0]]},
]


@pytest.mark.parametrize("state", BAD_TOKEN_STATES)
def test_a_malformed_token_checkpoint_is_refused_with_a_clear_error_and_keeps_the_totals(state):
    economics = TokenEconomics([KEY], TokenWeights(), 300)
    economics.record(interval(1.0), {KEY: TokenSignals(100, 100)})
    before = economics.export_state()
    with pytest.raises(ValueError, match=r"tokens"):
        economics.restore_state(state)
    assert economics.export_state() == before


@pytest.mark.parametrize("state", BAD_TENANT_STATES)
def test_a_malformed_tenant_checkpoint_is_refused_with_a_clear_error(state):
    ledger = TenantLedger([KEY], max_tenants=5)
    with pytest.raises(ValueError, match=r"tenants"):
        ledger.restore_state(state)
