"""Money: a scripted day through the ledger gives the values computed by hand here."""

import textwrap
from datetime import UTC, datetime

import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.ledger import ENDED_PERIOD_RETENTION_SECONDS, CostLedger, Usage
from ml_cost_exporter.cost.pricing import ResolvedAllocation, price_allocation

REL = 1e-6
AWS_VCPU, AWS_GIB = 0.031611, 0.004237
GPU_HOURLY = 27.447 / 8 - 8 * AWS_VCPU - 64 * AWS_GIB  # A100 80GB share of p4de, less the carved-out host
CPU_HOURLY, MEM_HOURLY = 8 * AWS_VCPU, 64 * AWS_GIB
POD_HOURLY = GPU_HOURLY + CPU_HOURLY + MEM_HOURLY
START = datetime(2026, 11, 16, tzinfo=UTC).timestamp()
STEP = 900.0  # 15-minute sampling intervals, to keep the arithmetic readable

CONFIG = textwrap.dedent("""
    allocation: {gpu: {type: a100-80gb, count: 1}, vcpus: 8, memory_gib: 64}
    models:
      - {name: chat, version: v1, labels: {team: a}, server: {preset: vllm, url: "http://s/metrics"}}
      - {name: embed, version: v2, labels: {team: b}, server: {preset: vllm, url: "http://s/metrics"}}
    budgets:
      - {name: team-a, amount_usd: 1000, selector: {team: a}}
      - {name: everyone, amount_usd: 5000}
    collection: {interval_seconds: 900, cost_window_seconds: 3600}
""")


def make_ledger(text: str = CONFIG, start: float = START):
    config = parse_config(text, "p.yaml")
    gpu = config.catalog.gpu_types["a100-80gb"]
    rates = price_allocation(config, ResolvedAllocation(gpu, 1.0, 8.0, 64.0))
    return config, CostLedger(config, rates, start)


def scripted_day():
    """96 intervals: busy 08:00-20:00 (90 % GPU, chat 10 rps, embed 5 rps), quiet at night (10 %, chat 1 rps)."""
    for i in range(96):
        hour = i * STEP / 3600
        busy = 8 <= hour < 20
        yield Usage(
            start=START + i * STEP, end=START + (i + 1) * STEP,
            gpu_utilization=0.9 if busy else 0.1,
            cpu_used_cores=2.0,
            memory_used_bytes=16 * 1024**3,
            requests={("chat", "v1"): (10 if busy else 1) * STEP, ("embed", "v2"): (5 if busy else 0) * STEP},
            tokens={(("chat", "v1"), "prompt"): 100.0},
        )


def test_a_scripted_day_accrues_the_hand_computed_cost_idle_cost_and_cost_per_1k():
    _, ledger = make_ledger()
    for usage in scripted_day():
        ledger.record(usage)
    snap = ledger.snapshot(START + 96 * STEP)

    # Hand computation: 48 busy intervals where chat pays 10/15 and embed 5/15; 48 quiet where chat pays all.
    hours = STEP / 3600
    chat_share = [10 / 15] * 48 + [1.0] * 48
    chat_gpu = sum(GPU_HOURLY * hours * s for s in chat_share)
    chat_total = sum(POD_HOURLY * hours * s for s in chat_share)
    chat_gpu_idle = GPU_HOURLY * hours * (48 * (10 / 15) * 0.1 + 48 * 1.0 * 0.9)
    cpu_idle_fraction, mem_idle_fraction = 1 - 2 / 8, 1 - 16 / 64

    assert snap.usd_total[("chat", "v1", "inference", "gpu")] == pytest.approx(chat_gpu, rel=REL)
    chat_sum = sum(v for k, v in snap.usd_total.items() if k[:2] == ("chat", "v1"))
    assert chat_sum == pytest.approx(chat_total, rel=REL)
    assert snap.idle_usd_total[("chat", "v1", "gpu")] == pytest.approx(chat_gpu_idle, rel=REL)
    assert snap.idle_usd_total[("chat", "v1", "cpu")] == pytest.approx(
        sum(CPU_HOURLY * hours * s for s in chat_share) * cpu_idle_fraction, rel=REL)
    assert snap.idle_usd_total[("embed", "v2", "memory")] == pytest.approx(
        MEM_HOURLY * hours * 48 * (5 / 15) * mem_idle_fraction, rel=REL)

    # Every dollar is attributed exactly once: the models' shares add up to the pod's cost.
    assert sum(snap.usd_total.values()) == pytest.approx(POD_HOURLY * 24, rel=REL)
    # Idle cost is a part of cost, never more than it.
    for (model, version, resource), idle in snap.idle_usd_total.items():
        assert idle <= snap.usd_total[(model, version, "inference", resource)] + 1e-12

    # The window holds the last 4 quiet intervals: chat pays everything for 1 request/s.
    assert snap.cost_per_1k_usd[("chat", "v1")] == pytest.approx(POD_HOURLY / 3600 * 1000, rel=REL)
    assert ("embed", "v2") not in snap.cost_per_1k_usd  # no requests in the window: absent, not 0 or Inf
    assert snap.requests_total[("chat", "v1")] == 48 * 10 * STEP + 48 * STEP
    assert snap.tokens_total[("chat", "v1", "prompt")] == 96 * 100.0

    # Budgets: team-a counts chat only; everyone counts both.
    assert snap.budget_spend_usd[("team-a", "2026-11")] == pytest.approx(chat_total, rel=REL)
    assert snap.budget_spend_usd[("everyone", "2026-11")] == pytest.approx(POD_HOURLY * 24, rel=REL)
    affordable_per_hour = 1000 / (30 * 24)
    assert snap.budget_burn_rate["team-a"] == pytest.approx(POD_HOURLY / affordable_per_hour, rel=REL)
    assert snap.hourly_usd[("chat", "v1", "inference", "gpu")] == pytest.approx(GPU_HOURLY, rel=REL)
    assert snap.hourly_usd[("embed", "v2", "inference", "gpu")] == 0.0


def test_with_no_requests_cost_is_split_equally_and_nothing_is_lost():
    _, ledger = make_ledger()
    ledger.record(Usage(START, START + 3600))
    snap = ledger.snapshot(START + 3600)
    assert snap.usd_total[("chat", "v1", "inference", "gpu")] == pytest.approx(GPU_HOURLY / 2, rel=REL)
    assert sum(snap.usd_total.values()) == pytest.approx(POD_HOURLY, rel=REL)
    assert snap.cost_per_1k_usd == {}
    assert snap.idle_usd_total[("chat", "v1", "gpu")] == 0.0  # utilization unknown: no idle claimed


def test_compute_time_attribution_uses_server_compute_and_falls_back_to_requests():
    _, ledger = make_ledger(CONFIG + "attribution: compute_time\n")
    chat, embed = ("chat", "v1"), ("embed", "v2")
    ledger.record(Usage(START, START + 3600, requests={chat: 100, embed: 100}, compute_seconds={chat: 30, embed: 10}))
    ledger.record(Usage(START + 3600, START + 7200, requests={chat: 100, embed: 300}))
    snap = ledger.snapshot(START + 7200)
    assert snap.usd_total[(*chat, "inference", "gpu")] == pytest.approx(GPU_HOURLY * (0.75 + 0.25), rel=REL)


def test_an_interval_across_the_month_boundary_is_split_between_the_two_periods():
    boundary = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    _, ledger = make_ledger(start=boundary - 1800)
    ledger.record(Usage(boundary - 1800, boundary + 1800))
    snap = ledger.snapshot(boundary + 1800)
    assert snap.budget_spend_usd[("everyone", "2026-11")] == pytest.approx(POD_HOURLY / 2, rel=REL)
    assert snap.budget_spend_usd[("everyone", "2026-12")] == pytest.approx(POD_HOURLY / 2, rel=REL)
    assert snap.budget_periods["everyone"].label == "2026-12"
    later = ledger.snapshot(boundary + ENDED_PERIOD_RETENTION_SECONDS + 1)
    assert ("everyone", "2026-11") not in later.budget_spend_usd  # the ended period's series goes away
    assert ("everyone", "2026-12") in later.budget_spend_usd


def test_reconfigure_keeps_totals_of_remaining_models_and_drops_removed_ones():
    _config, ledger = make_ledger()
    ledger.record(Usage(START, START + 3600, requests={("chat", "v1"): 1}))
    embed_line = next(line for line in CONFIG.splitlines(keepends=True) if "name: embed" in line)
    smaller = parse_config(CONFIG.replace(embed_line, ""), "p.yaml")
    assert len(smaller.models) == 1
    ledger.reconfigure(smaller, ledger._rates, START + 3600)
    snap = ledger.snapshot(START + 3600)
    assert snap.usd_total[("chat", "v1", "inference", "gpu")] == pytest.approx(GPU_HOURLY, rel=REL)
    assert not any(k[0] == "embed" for k in snap.usd_total)


def test_onprem_energy_uses_measured_power_and_falls_back_to_tdp():
    text = ("pricing: {provider: onprem, onprem: {power_usd_per_kwh: 0.2, pue: 1.5}}\n"
            "allocation: {gpu: {type: h100, count: 1}}\n")
    config = parse_config(text, "p.yaml")
    rates = price_allocation(config, ResolvedAllocation(config.catalog.gpu_types["h100"], 1.0, 4.0, 16.0))
    ledger = CostLedger(config, rates, START)
    ledger.record(Usage(START, START + 3600, gpu_power_watts=500.0))
    ledger.record(Usage(START + 3600, START + 7200))  # power unknown: TDP 700 W
    snap = ledger.snapshot(START + 7200)
    assert snap.usd_total[("default", "latest", "inference", "energy")] == pytest.approx(
        0.5 * 0.2 * 1.5 + 0.7 * 0.2 * 1.5, rel=REL)
