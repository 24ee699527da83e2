"""The books record one measurement in every account; cache hits become savings, never cost."""

from __future__ import annotations

import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.books import Books, Measurement
from ml_cost_exporter.cost.pricing import CostRates, ResolvedAllocation

KEY = ("chat", "latest")


def books() -> Books:
    config = parse_config("allocation: {vcpus: 1, memory_gib: 1}\nmodels: [{name: chat}]\n", "p.yaml")
    rates = CostRates(0.0, 3.6, 0.0, 0.0, 0.0, 0.0, ResolvedAllocation(None, 0.0, 1.0, 1.0))  # $3.60 an hour of CPU
    return Books(config, rates, 0.0)


def test_cache_hits_save_what_the_requests_that_did_work_cost_each_and_cost_nothing_more():
    account = books()
    account.record(Measurement(0.0, 3600.0, deltas={KEY: {"requests": 10.0, "cache_hits": 4.0}}))
    snapshot = account.snapshot(3600.0)
    assert sum(snapshot.ledger.usd_total.values()) == pytest.approx(3.6)  # the hour's cost, attributed once
    assert snapshot.cache.savings_usd_total[KEY] == pytest.approx(4 * 3.6 / 6)  # 4 hits at $0.60 a worked request


def test_cache_savings_survive_a_checkpoint_and_refuse_a_state_that_is_not_counts():
    account = books()
    account.record(Measurement(0.0, 3600.0, deltas={KEY: {"requests": 10.0, "cache_hits": 4.0}}))
    state = account.cache.export_state()
    restored = books()
    restored.cache.restore_state(state)
    assert restored.snapshot(0.0).cache.savings_usd_total == account.snapshot(0.0).cache.savings_usd_total
    for bad in ({"version": 2}, {"version": 1, "savings": [["chat", "latest", float("nan")]], "per_request": []},
                {"version": 1, "savings": "x", "per_request": []}):
        with pytest.raises(ValueError):
            restored.cache.restore_state(bad)
    assert restored.snapshot(0.0).cache.savings_usd_total[KEY] == pytest.approx(2.4)  # unchanged by refusals
