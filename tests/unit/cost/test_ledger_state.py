"""Restart safety of the ledger: state round-trips, the downtime gap follows the rule, bad state is refused."""

import json
import math
import textwrap
from datetime import UTC, datetime

import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.ledger import CostLedger, Usage
from ml_cost_exporter.cost.pricing import ResolvedAllocation, price_allocation
from tests.unit.cost.test_ledger import CONFIG, POD_HOURLY, REL, START, make_ledger, scripted_day

CHAT, EMBED = ("chat", "v1"), ("embed", "v2")


def busy_hour(ledger: CostLedger, start: float, chat: float = 300, embed: float = 100) -> None:
    ledger.record(Usage(start, start + 3600, gpu_utilization=0.5, requests={CHAT: chat, EMBED: embed},
                        tokens={(CHAT, "prompt"): 10.0}))


def restarted(state: dict, text: str = CONFIG, now: float = START) -> CostLedger:
    _, fresh = make_ledger(text, start=now)
    fresh.restore_state(json.loads(json.dumps(state, allow_nan=False)))  # through JSON, as on disk
    return fresh


def test_a_restored_ledger_continues_every_total_and_the_cost_per_1k_window():
    _, ledger = make_ledger()
    for usage in scripted_day():
        ledger.record(usage)
    end = START + 86400
    before = ledger.snapshot(end)
    after = restarted(ledger.export_state(), now=end).snapshot(end)
    assert after.usd_total == before.usd_total
    assert after.idle_usd_total == before.idle_usd_total
    assert after.requests_total == before.requests_total and after.tokens_total == before.tokens_total
    assert after.budget_spend_usd == before.budget_spend_usd
    assert after.cost_per_1k_usd == before.cost_per_1k_usd


def test_the_downtime_is_accrued_at_the_allocation_price_by_the_last_shares_without_idle_cost():
    _, ledger = make_ledger()
    busy_hour(ledger, START)  # chat 3/4, embed 1/4
    before = ledger.snapshot(START + 3600)
    fresh = restarted(ledger.export_state(), now=START + 3600 + 600)
    outcome = fresh.catch_up(START + 3600 + 600, max_gap_seconds=900)
    assert outcome.accrued and outcome.seconds == pytest.approx(600)
    after = fresh.snapshot(START + 4200)
    gap_cost = POD_HOURLY * 600 / 3600
    assert sum(after.usd_total.values()) - sum(before.usd_total.values()) == pytest.approx(gap_cost, rel=REL)
    chat_gain = sum(v - before.usd_total[k] for k, v in after.usd_total.items() if k[:2] == CHAT)
    assert chat_gain == pytest.approx(gap_cost * 0.75, rel=REL)
    assert after.idle_usd_total == before.idle_usd_total  # utilization unknown: no idle claimed
    assert after.requests_total == before.requests_total
    assert after.cost_per_1k_usd == before.cost_per_1k_usd  # the gap's requests are unknown: not in cost per 1k
    assert fresh.accrued_until == START + 4200


def test_a_gap_across_a_month_boundary_goes_to_both_periods():
    boundary = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    _, ledger = make_ledger(start=boundary - 3900)
    busy_hour(ledger, boundary - 3900)  # ends 300 s before the boundary
    november = ledger.snapshot(boundary - 300).budget_spend_usd[("everyone", "2026-11")]
    fresh = restarted(ledger.export_state(), now=boundary + 300)
    assert fresh.catch_up(boundary + 300, max_gap_seconds=900).accrued
    spend = fresh.snapshot(boundary + 300).budget_spend_usd
    assert spend[("everyone", "2026-11")] - november == pytest.approx(POD_HOURLY * 300 / 3600, rel=REL)
    assert spend[("everyone", "2026-12")] == pytest.approx(POD_HOURLY * 300 / 3600, rel=REL)


@pytest.mark.parametrize("gap", [901.0, -60.0], ids=["longer-than-the-limit", "clock-went-back"])
def test_a_gap_over_the_limit_or_backwards_is_not_accrued_but_totals_continue(gap):
    _, ledger = make_ledger()
    busy_hour(ledger, START)
    before = ledger.snapshot(START + 3600)
    fresh = restarted(ledger.export_state(), now=START + 3600 + gap)
    outcome = fresh.catch_up(START + 3600 + gap, max_gap_seconds=900)
    assert not outcome.accrued and outcome.seconds == pytest.approx(gap)
    assert fresh.snapshot(START + 3600 + gap).usd_total == before.usd_total


def test_a_config_changed_across_the_restart_behaves_as_a_reload_and_the_gap_keeps_the_old_price():
    _, ledger = make_ledger()
    busy_hour(ledger, START)
    before = ledger.snapshot(START + 3600)
    embed_line = next(line for line in CONFIG.splitlines(keepends=True) if "name: embed" in line)
    changed = CONFIG.replace(embed_line, embed_line.replace("embed", "rerank")) + "pricing: {price_ratio: 0.5}\n"
    fresh = restarted(ledger.export_state(), changed, now=START + 3900)
    fresh.catch_up(START + 3900, max_gap_seconds=900)
    after = fresh.snapshot(START + 3900)
    assert not any(k[0] == "embed" for k in after.usd_total)  # removed model: dropped, as on reload
    assert after.requests_total[("rerank", "v2")] == 0.0  # added model: starts at zero
    chat_before = sum(v for k, v in before.usd_total.items() if k[:2] == CHAT)
    chat_after = sum(v for k, v in after.usd_total.items() if k[:2] == CHAT)
    # The gap is priced as the pod was priced when it went down, and all of it goes to chat, the only
    # model with a known share now.
    assert chat_after - chat_before == pytest.approx(POD_HOURLY * 300 / 3600, rel=REL)
    fresh.record(Usage(START + 3900, START + 7500, requests={CHAT: 1}))
    later = fresh.snapshot(START + 7500)
    assert sum(later.usd_total.values()) - sum(after.usd_total.values()) == pytest.approx(POD_HOURLY * 0.5, rel=REL)


def tamper(state: dict, path: str, value: object) -> dict:
    target, *rest = path.split(".")
    copy = json.loads(json.dumps(state))
    if not rest:
        copy[target] = value
    else:
        row, column = int(rest[0]), int(rest[1])
        copy[target][row][column] = value
    return copy


BAD = {
    "negative": ("usd.0.4", -1.0),
    "nan": ("usd.0.4", math.nan),
    "infinite": ("idle.0.3", math.inf),
    "huge": ("usd.0.4", 1e15),
    "string-number": ("requests.0.2", "12"),
    "boolean-number": ("requests.0.2", True),
    "number-name": ("usd.0.0", 7),
    "unknown-resource": ("usd.0.3", "bitcoin"),
    "short-row": ("usd.0", None),
    "not-a-list": ("tokens", {"a": 1}),
    "missing-time": ("since", None),
    "time-in-year-9999": ("accrued_until", 253_402_300_800.0),
    "shares-over-one": ("shares.0.2", 1.5),
    "huge-rate": ("rates", {"gpu": 1e9}),
    "negative-budget": ("budget_spend.0.2", -5.0),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_tampered_state_is_refused_with_a_message_and_changes_nothing(name):
    _, ledger = make_ledger()
    busy_hour(ledger, START)
    path, value = BAD[name]
    state = ledger.export_state()
    if path == "usd.0":
        state["usd"][0] = state["usd"][0][:3]
    elif path == "since":
        del state["since"]
    else:
        state = tamper(state, path, value)
    _, fresh = make_ledger(start=START + 3600)
    before = fresh.snapshot(START + 3600)
    with pytest.raises(ValueError) as error:
        fresh.restore_state(state)
    assert str(error.value).split(":")[0].split("[")[0] in ("usd", "idle", "requests", "tokens", "since",
                                                             "accrued_until", "shares", "rates", "budget_spend",
                                                             "rates.gpu")
    assert fresh.snapshot(START + 3600) == before


def test_failed_requests_take_a_share_of_cost_but_cost_per_1k_divides_by_successes_only():
    text = CONFIG.replace('server: {preset: vllm, url: "http://s/metrics"}}',
                          'server: {preset: generic, url: "http://s/metrics", requests: {metric: ok_total}, '
                          'failed_requests: {metric: failed_total}}}')
    config = parse_config(text, "p.yaml")
    rates = price_allocation(config, ResolvedAllocation(config.catalog.gpu_types["a100-80gb"], 1.0, 8.0, 64.0))
    ledger = CostLedger(config, rates, START)
    # chat serves 100 and fails 100; embed's 200 all fail. Work done: chat 200, embed 200.
    ledger.record(Usage(START, START + 3600, requests={CHAT: 100}, failed_requests={CHAT: 100, EMBED: 200}))
    snap = ledger.snapshot(START + 3600)
    chat = sum(v for k, v in snap.usd_total.items() if k[:2] == CHAT)
    embed = sum(v for k, v in snap.usd_total.items() if k[:2] == EMBED)
    assert chat == pytest.approx(POD_HOURLY / 2, rel=REL) and embed == pytest.approx(POD_HOURLY / 2, rel=REL)
    assert snap.cost_per_1k_usd[CHAT] == pytest.approx(POD_HOURLY / 2 / 100 * 1000, rel=REL)
    assert EMBED not in snap.cost_per_1k_usd  # no successful request: no cost per 1k, not a finite one
    assert snap.failed_requests_total == {CHAT: 100.0, EMBED: 200.0}
    assert snap.requests_total == {CHAT: 100.0, EMBED: 0.0}


def test_failed_requests_are_exported_only_for_models_whose_server_reports_them():
    text = CONFIG.replace('server: {preset: vllm, url: "http://s/metrics"}}',
                          'server: {preset: generic, url: "http://s/metrics", requests: {metric: ok_total}}}')
    _, ledger = make_ledger(text)  # a server that counts no failures
    ledger.record(Usage(START, START + 60, requests={CHAT: 1}))
    assert ledger.snapshot(START + 60).failed_requests_total == {}
    _, ledger = make_ledger()  # the vllm preset counts them: zero is a measurement
    ledger.record(Usage(START, START + 60, requests={CHAT: 1}))
    assert ledger.snapshot(START + 60).failed_requests_total == {CHAT: 0.0, EMBED: 0.0}


def test_record_returns_the_interval_money_by_model_and_resource():
    _, ledger = make_ledger()
    interval = ledger.record(Usage(START, START + 3600, requests={CHAT: 3, EMBED: 1}))
    assert (interval.start, interval.end) == (START, START + 3600)
    assert interval.shares == {CHAT: 0.75, EMBED: 0.25}
    assert sum(interval.by_model[CHAT].values()) == pytest.approx(POD_HOURLY * 0.75, rel=REL)
    assert set(interval.by_model[EMBED]) == {"gpu", "cpu", "memory", "fixed"}


def test_unmeasured_time_before_a_shutdown_is_accrued_by_the_last_shares():
    _, ledger = make_ledger()
    busy_hour(ledger, START)
    before = sum(ledger.snapshot(START + 3600).usd_total.values())
    interval = ledger.accrue_unmeasured(START + 3600, START + 3660)
    assert interval.shares == {CHAT: 0.75, EMBED: 0.25}
    assert sum(ledger.snapshot(START + 3660).usd_total.values()) - before == pytest.approx(POD_HOURLY / 60, rel=REL)
    assert ledger.accrued_until == START + 3660


def test_the_state_is_small_and_plain_json():
    _, ledger = make_ledger(textwrap.dedent(CONFIG))
    for usage in scripted_day():
        ledger.record(usage)
    text = json.dumps(ledger.export_state(), allow_nan=False)
    assert len(text) < 8000
