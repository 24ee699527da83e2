"""Response-cache savings: hits times the measured cost per request that did model work, per model, monotonic."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_cost_exporter.cost.cache import (
    CacheSavings,
    CacheSavingsSnapshot,
    cache_savings_usd,
    cost_per_work_request,
)
from ml_cost_exporter.cost.ledger import IntervalCost

CHAT = ("chat", "v1")
EMBED = ("embed", "v2")


def interval(start: float, **cost_by_model: dict[str, float]) -> IntervalCost:
    by_model = {tuple(name.split("_")): resources for name, resources in cost_by_model.items()}
    return IntervalCost(start, start + 15, by_model, {key: 1 / len(by_model) for key in by_model})


def test_cost_per_work_request_leaves_the_hits_out():
    # $3 charged for 40 successful requests, 10 of them from the cache: 30 did the work, $0.10 each.
    assert cost_per_work_request(3.0, 40, 10) == pytest.approx(0.1)
    assert cache_savings_usd(3.0, 40, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(("cost", "requests", "hits"), [
    (3.0, 10, 10), (3.0, 0, 0), (3.0, 5, 9), (math.nan, 10, 1), (3.0, math.inf, 1), (-1.0, 10, 1),
    (3.0, -4, 1), (3.0, 10, -1), (3.0, True, 0), (3.0, "10", 1),
], ids=repr)
def test_there_is_no_cost_per_request_without_work_or_with_a_bad_input(cost, requests, hits):
    assert cost_per_work_request(cost, requests, hits) is None


def test_an_interval_of_only_hits_uses_the_last_measured_cost_per_request():
    assert cache_savings_usd(2.0, 8, 8, last_cost_per_request=0.25) == 2.0
    assert cache_savings_usd(2.0, 8, 8) == 0.0  # never measured: nothing claimed
    assert cache_savings_usd(2.0, 4, 9, last_cost_per_request=0.5) == 2.0  # at most as many hits as requests


def test_savings_accumulate_per_model_across_intervals():
    savings = CacheSavings()
    savings.add(interval(0, chat_v1={"gpu": 2.5, "cpu": 0.5}, embed_v2={"gpu": 1.0}),
                requests={CHAT: 40, EMBED: 10}, cache_hits={CHAT: 10})
    # chat: $3 / 30 work requests = $0.10, 10 hits -> $1.00; embed: no hits.
    savings.add(interval(15, chat_v1={"gpu": 1.0}, embed_v2={"gpu": 1.0}),
                requests={CHAT: 6, EMBED: 5}, cache_hits={CHAT: 6, EMBED: 1})
    # chat: all hits, the last $0.10 each -> $0.60; embed: $1 / 4 work requests = $0.25, one hit.
    snapshot = savings.snapshot()
    assert snapshot.savings_usd_total == {CHAT: pytest.approx(1.6), EMBED: pytest.approx(0.25)}
    assert snapshot.cost_per_request_usd == {CHAT: pytest.approx(0.1), EMBED: pytest.approx(0.25)}


def test_bad_inputs_are_refused_with_their_reason_and_change_no_total():
    savings = CacheSavings()
    savings.add(interval(0, chat_v1={"gpu": 3.0}), requests={CHAT: 40}, cache_hits={CHAT: 10})
    savings.add(interval(15, chat_v1={"gpu": math.nan}), requests={CHAT: 40}, cache_hits={CHAT: 10})
    savings.add(interval(30, chat_v1={"gpu": 3.0}), requests={CHAT: -5}, cache_hits={CHAT: 10})
    savings.add(interval(45, chat_v1={"gpu": 3.0}), requests={CHAT: 2}, cache_hits={CHAT: 5})
    snapshot = savings.snapshot()
    # The last interval: hits above requests are two hits at the last $0.10.
    assert snapshot.savings_usd_total == {CHAT: pytest.approx(1.2)}
    assert snapshot.refused == {"not_a_count": 2, "hits_above_requests": 1}


def test_a_total_that_would_overflow_is_refused_and_kept():
    savings = CacheSavings()
    savings.add(interval(0, chat_v1={"gpu": 1e308}), requests={CHAT: 2}, cache_hits={CHAT: 1})
    savings.add(interval(15, chat_v1={"gpu": 1e308}), requests={CHAT: 2}, cache_hits={CHAT: 1})
    assert savings.snapshot().savings_usd_total == {CHAT: 1e308}
    assert savings.snapshot().refused == {"not_finite": 1}


def test_restore_continues_from_a_checkpoint_and_drops_what_is_not_a_count():
    savings = CacheSavings()
    savings.restore(CacheSavingsSnapshot({CHAT: 5.0, EMBED: math.inf}, {CHAT: 0.5, EMBED: -1.0}, {}))
    savings.add(interval(0, chat_v1={"gpu": 1.0}), requests={CHAT: 3}, cache_hits={CHAT: 3})
    assert savings.snapshot().savings_usd_total == {CHAT: 6.5}
    assert savings.snapshot().cost_per_request_usd == {CHAT: 0.5}


def test_concurrent_adds_lose_nothing():
    savings = CacheSavings()

    def add_many():
        for i in range(500):
            savings.add(interval(i * 15, chat_v1={"gpu": 1.0}), requests={CHAT: 11}, cache_hits={CHAT: 1})

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert savings.snapshot().savings_usd_total[CHAT] == pytest.approx(2000 * 0.1)


costs = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6))
counts = st.one_of(costs, st.none())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(costs, counts, counts), max_size=10))
def test_any_sequence_of_intervals_keeps_the_total_finite_and_monotonic(steps):
    savings = CacheSavings()
    previous = 0.0
    for i, (cost, requests, hits) in enumerate(steps):
        savings.add(interval(i * 15, chat_v1={"gpu": cost}), requests={CHAT: requests}, cache_hits={CHAT: hits})
        total = savings.snapshot().savings_usd_total.get(CHAT, 0.0)
        assert math.isfinite(total) and total >= previous
        previous = total
