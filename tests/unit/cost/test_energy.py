import math

import pytest

from ml_cost_exporter.config.schema import Energy
from ml_cost_exporter.cost.energy import EnergyAccount
from ml_cost_exporter.cost.ledger import IntervalCost

A, B = ("chat", "v1"), ("embed", "v2")
GRID = Energy(carbon_intensity_g_per_kwh=400.0, pue=1.2, region="test", source="test")


def interval(end: float, shares: dict) -> IntervalCost:
    return IntervalCost(end - 60, end, {k: {"gpu": s} for k, s in shares.items()}, shares)


def test_energy_follows_the_cost_shares_and_carbon_applies_pue_and_intensity():
    account = EnergyAccount([A, B], GRID, window_seconds=300)
    account.record(interval(60, {A: 0.75, B: 0.25}), 3.6e6, {A: 300, B: 100}, {})
    snap = account.snapshot(60)
    assert snap.joules_total == {A: 2.7e6, B: 0.9e6}
    # 0.75 kWh x 1.2 x 400 g/kWh = 360 g
    assert snap.carbon_grams_total[A] == pytest.approx(360.0) and snap.carbon_grams_total[B] == pytest.approx(120.0)
    assert snap.joules_per_1k_requests[A] == pytest.approx(2.7e6 / 300 * 1000)


def test_energy_is_absent_until_measured_and_unmeasured_intervals_do_not_dilute_the_window():
    account = EnergyAccount([A], GRID, window_seconds=300)
    account.record(interval(60, {A: 1.0}), None, {A: 1000}, {})
    snap = account.snapshot(60)
    assert snap.joules_total == {} and snap.joules_per_1k_requests == {}
    account.record(interval(120, {A: 1.0}), 6_000.0, {A: 10}, {A: 0.5})
    snap = account.snapshot(120)
    assert snap.joules_per_1k_requests[A] == pytest.approx(600_000.0)  # 6 kJ over 10 requests, not over 1010
    assert snap.joules_per_epoch[A] == pytest.approx(12_000.0)


def test_carbon_is_absent_where_the_grid_is_unknown():
    account = EnergyAccount([A], Energy(None, 1.4, None, ""), window_seconds=300)
    account.record(interval(60, {A: 1.0}), 1000.0, {}, {})
    assert account.snapshot(60).joules_total == {A: 1000.0} and account.snapshot(60).carbon_grams_total == {}


def test_the_window_forgets_old_intervals():
    account = EnergyAccount([A], GRID, window_seconds=120)
    account.record(interval(60, {A: 1.0}), 1000.0, {A: 1}, {})
    account.record(interval(300, {A: 1.0}), 50.0, {A: 1}, {})
    assert account.snapshot(300).joules_per_1k_requests[A] == pytest.approx(50_000.0)


def test_state_round_trips_and_removed_models_are_dropped():
    account = EnergyAccount([A, B], GRID, window_seconds=300)
    account.record(interval(60, {A: 0.5, B: 0.5}), 7200.0, {}, {})
    restored = EnergyAccount([A], GRID, window_seconds=300)
    restored.restore_state(account.export_state())
    assert restored.snapshot(60).joules_total == {A: 3600.0}


@pytest.mark.parametrize("state", [
    None, {}, {"version": 2, "models": []},
    {"version": 1, "models": [{"model": "chat", "version": "v1", "joules": -1}]},
    {"version": 1, "models": [{"model": "chat", "version": "v1", "joules": math.nan}]},
    {"version": 1, "models": [{"model": "chat", "version": "v1", "joules": math.inf}]},
    {"version": 1, "models": [{"model": "chat", "version": "v1", "joules": "12"}]},
    {"version": 1, "models": [{"model": 7, "version": "v1", "joules": 1}]},
    {"version": 1, "models": [{"model": "chat", "version": "v1", "joules": 1, "grams": True}]},
])
def test_a_bad_state_is_refused_and_changes_nothing(state):
    account = EnergyAccount([A], GRID, window_seconds=300)
    account.record(interval(60, {A: 1.0}), 100.0, {}, {})
    with pytest.raises(ValueError):
        account.restore_state(state)
    assert account.snapshot(60).joules_total == {A: 100.0}
