"""A job budget (period: job): one period for the job's whole life, across month ends and exporter restarts."""

import textwrap

import pytest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime

CONFIG = textwrap.dedent("""
    allocation: {vcpus: 8, memory_gib: 32}
    models:
      - {name: finetune, version: run-1, workload: training}
    budgets:
      - {name: finetune-job, amount_usd: 50, period: job, selector: {models: [finetune]}}
      - {name: monthly, amount_usd: 1000}
    collection: {interval_seconds: 60}
""")


def make(tmp_path, clock, storage=None) -> Runtime:
    config = tmp_path / "pricing.yaml"
    config.write_text(CONFIG)
    return Runtime(str(config), frozenset(), Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path,
                   storage_path=storage)


def test_a_job_budget_spans_month_ends_and_has_no_period_bounds_or_burn_rate(tmp_path, clock):
    clock.now = 1_796_083_200.0 - 1800  # half an hour before 2026-12-01T00:00Z
    runtime = make(tmp_path, clock)
    for _ in range(60):  # an hour, across the month end
        clock.advance(60)
        runtime.tick()
    registry = build_registry(runtime.state, runtime.clocks.monotonic)
    job = registry.get_sample_value("mlcost_budget_spend_usd_total", {"budget": "finetune-job", "period": "job"})
    november = registry.get_sample_value("mlcost_budget_spend_usd_total", {"budget": "monthly", "period": "2026-11"})
    december = registry.get_sample_value("mlcost_budget_spend_usd_total", {"budget": "monthly", "period": "2026-12"})
    assert job == pytest.approx(november + december) and november == pytest.approx(december, rel=0.05)
    assert registry.get_sample_value("mlcost_budget_current_period_info",
                                     {"budget": "finetune-job", "period": "job"}) == 1
    for name in ("mlcost_budget_period_start_timestamp_seconds", "mlcost_budget_period_end_timestamp_seconds",
                 "mlcost_budget_burn_rate"):
        assert registry.get_sample_value(name, {"budget": "finetune-job"}) is None
        assert registry.get_sample_value(name, {"budget": "monthly"}) is not None
    assert registry.get_sample_value("mlcost_budget_limit_usd", {"budget": "finetune-job"}) == 50
    runtime.close()


def test_a_job_budget_survives_an_exporter_restart_through_the_checkpoint(tmp_path, clock):
    storage = tmp_path / "state"
    storage.mkdir()
    runtime = make(tmp_path, clock, storage=str(storage))
    for _ in range(10):
        clock.advance(60)
        runtime.tick()
    runtime.close()
    before = build_registry(runtime.state, runtime.clocks.monotonic).get_sample_value("mlcost_budget_spend_usd_total",
                                                      {"budget": "finetune-job", "period": "job"})
    clock.advance(30)  # down for 30 s: accrued from the checkpoint at the allocation's price
    restarted = make(tmp_path, clock, storage=str(storage))
    assert restarted.state_restored
    registry = build_registry(restarted.state, restarted.clocks.monotonic)
    after = registry.get_sample_value("mlcost_budget_spend_usd_total", {"budget": "finetune-job", "period": "job"})
    assert after == pytest.approx(before * (600 + 30) / 600, rel=1e-6)
    restarted.close()
