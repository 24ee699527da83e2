"""Cost-aware autoscaling proven on the HPA's documented algorithm, against the naive design.

Pods cost $4 an hour; the target is $0.10 per 1,000 requests, so r* = 4 / (3.6 x 0.1) = 11.1 requests/s
per pod. The signal (prometheus/rules/mlcost-scaling.rules.yml, its formula checked in
prometheus/tests/scaling.test.yml) is each pod's request rate over r*, with an HPA averageValue target of 1.
A queue metric (load over 90 % of what a pod sustains at its latency objective) stands beside it, so
latency wins when a pod cannot sustain r*.
"""

import math

import pytest

from tests.autoscaling.hpa import Hpa

POD_HOURLY_USD = 4.0
TARGET_PER_1K = 0.10
R_STAR = POD_HOURLY_USD / (3.6 * TARGET_PER_1K)
SYNC = 15.0
DAY = 86400


def cost_per_1k(replicas: int, rps: float) -> float:
    return POD_HOURLY_USD * replicas / (3.6 * rps) if rps > 0 else math.inf


def diurnal(t: float) -> float:
    """A day of traffic: 150 requests/s at night, 1,000 at the afternoon peak, with two sudden steps."""
    base = 575 - 425 * math.cos(2 * math.pi * (t - 3 * 3600) / DAY)
    if 10 * 3600 <= t < 11 * 3600:
        base *= 2.0  # a launch doubles traffic for an hour
    if 15 * 3600 <= t < 16 * 3600:
        base *= 0.4  # an upstream outage cuts it to 40 %
    return base


def cost_signal(rps: float):
    return lambda replicas: ((rps / replicas) / R_STAR if replicas else math.inf, 1.0)


def queue_signal(rps: float, sustained_rps: float):
    return lambda replicas: ((rps / replicas) / (0.9 * sustained_rps), 1.0)


def run(trace, hpa: Hpa, signals, until: float = DAY, start: float = 0.0):
    history = []
    t = start
    while t < until:
        rps = trace(t)
        hpa.sync(t, [make(rps) for make in signals])
        history.append((t, rps, hpa.replicas))
        t += SYNC
    return history


STEPS = [(10 * 3600, "up"), (11 * 3600, "down"), (15 * 3600, "down"), (16 * 3600, "up")]


def in_transient(t: float) -> bool:
    """The seconds after a sudden step that the algorithm needs: 3 syncs up, stabilization + 3 syncs down."""
    for step, direction in STEPS:
        settle = 3 * SYNC if direction == "up" else 300 + 3 * SYNC
        if step <= t < step + settle:
            return True
    return False


def test_cost_per_1k_stays_within_15_percent_of_target_over_a_day():
    hpa = Hpa(min_replicas=2, max_replicas=400, replicas=math.ceil(diurnal(0) / R_STAR))
    history = run(diurnal, hpa, [cost_signal, lambda rps: queue_signal(rps, sustained_rps=14.0)])
    steady = [(t, rps, n) for t, rps, n in history if not in_transient(t)]
    worst = max(abs(cost_per_1k(n, rps) / TARGET_PER_1K - 1) for _, rps, n in steady)
    assert worst <= 0.15, f"cost per 1k strayed {worst:.1%} from target"
    assert max(n for _, _, n in history) < 400


@pytest.mark.parametrize(("step", "direction"), STEPS)
def test_after_a_step_replicas_converge_in_3_sync_periods(step, direction):
    hpa = Hpa(min_replicas=2, max_replicas=400, replicas=math.ceil(diurnal(step - 3600) / R_STAR))
    history = run(diurnal, hpa, [cost_signal], until=step + 600, start=step - 3600)
    settle = 3 * SYNC if direction == "up" else 300 + 3 * SYNC
    after = [(t, rps, n) for t, rps, n in history if t >= step + settle]
    for _, rps, n in after:
        assert abs(cost_per_1k(n, rps) / TARGET_PER_1K - 1) <= 0.15


def test_falling_traffic_never_adds_replicas():
    hpa = Hpa(min_replicas=2, max_replicas=400, replicas=9)
    history = run(lambda t: 100.0 if t < 600 else 50.0, hpa, [cost_signal], until=1800)
    replicas = [n for _, _, n in history]
    assert max(replicas) == 9 and replicas[-1] == math.ceil(50 / R_STAR) == 5


def test_the_naive_hpa_on_cost_per_1k_runs_away_when_traffic_falls():
    """The worked example: $4/h pods, target $0.10 per 1k, traffic falling from 100 to 50 requests/s."""

    def naive(rps: float):
        return lambda replicas: (cost_per_1k(replicas, rps), TARGET_PER_1K)

    hpa = Hpa(min_replicas=2, max_replicas=100, replicas=9)
    history = run(lambda t: 100.0 if t < 600 else 50.0, hpa, [naive], until=1200)
    before = [n for t, _, n in history if t < 600]
    after = [n for t, _, n in history if t >= 600]
    assert set(before) == {9}  # steady at 100 requests/s
    assert after[:4] == [18, 36, 72, 100]  # 9 -> 18 -> 36 (policy-limited) -> 72 -> maxReplicas
    assert cost_per_1k(after[-1], 50.0) > 10 * TARGET_PER_1K
    aware = Hpa(min_replicas=2, max_replicas=100, replicas=9)
    assert run(lambda t: 100.0 if t < 600 else 50.0, aware, [cost_signal], until=1200)[-1][2] == 5


def test_latency_wins_when_a_pod_cannot_sustain_r_star():
    sustained = 8.0  # a pod meets its latency objective only up to 8 requests/s, below r* = 11.1
    hpa = Hpa(min_replicas=2, max_replicas=400, replicas=10)
    history = run(lambda t: 300.0, hpa, [cost_signal, lambda rps: queue_signal(rps, sustained)], until=900)
    final = history[-1][2]
    assert 300.0 / final <= sustained  # every pod within what it sustains
    assert final > math.ceil(300 / R_STAR)  # more pods than the cost target alone asks for
    assert abs((300.0 / final) / (0.9 * sustained) - 1) <= 0.1  # the queue metric settled within tolerance


def test_a_budget_cap_in_a_min_formula_holds_however_high_demand_goes():
    """KEDA's scalingModifiers formula: min(demand replicas, replicas the remaining budget affords)."""
    budget_replicas = 20

    def capped(rps: float):
        def metric(replicas: int) -> tuple[float, float]:
            wanted = min(rps / R_STAR, budget_replicas)
            return wanted / replicas, 1.0

        return metric

    hpa = Hpa(min_replicas=2, max_replicas=400, replicas=5)
    history = run(lambda t: 50.0 if t < 300 else 2000.0, hpa, [capped], until=1800)
    assert max(n for _, _, n in history) == budget_replicas


def test_zero_traffic_scales_to_the_minimum_without_nan_or_inf():
    hpa = Hpa(min_replicas=2, max_replicas=400, replicas=10)
    history = run(lambda t: 0.0, hpa, [cost_signal], until=900)
    value, _ = cost_signal(0.0)(10)
    assert value == 0.0 and history[-1][2] == 2
