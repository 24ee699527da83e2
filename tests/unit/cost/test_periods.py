from datetime import UTC, datetime

import pytest

from ml_cost_exporter.cost.periods import period_at, split_by_period


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("kind", "moment", "label", "start", "end"), [
    ("month", ts(2026, 11, 23, 15), "2026-11", ts(2026, 11, 1), ts(2026, 12, 1)),
    ("month", ts(2026, 12, 31, 23, 59, 59), "2026-12", ts(2026, 12, 1), ts(2027, 1, 1)),
    ("month", ts(2028, 2, 10), "2028-02", ts(2028, 2, 1), ts(2028, 3, 1)),
    ("quarter", ts(2026, 11, 23), "2026-Q4", ts(2026, 10, 1), ts(2027, 1, 1)),
    ("quarter", ts(2026, 3, 31, 23), "2026-Q1", ts(2026, 1, 1), ts(2026, 4, 1)),
    ("week", ts(2026, 11, 23, 8), "2026-W48", ts(2026, 11, 23), ts(2026, 11, 30)),
    ("week", ts(2027, 1, 2), "2026-W53", ts(2026, 12, 28), ts(2027, 1, 4)),
    ("day", ts(2026, 11, 23, 23, 59), "2026-11-23", ts(2026, 11, 23), ts(2026, 11, 24)),
])
def test_period_bounds_and_labels_are_utc(kind, moment, label, start, end):
    period = period_at(kind, moment)
    assert (period.label, period.start, period.end) == (label, start, end)


def test_an_interval_across_a_month_boundary_is_split_at_the_boundary():
    parts = split_by_period("month", ts(2026, 11, 30, 23, 50), ts(2026, 12, 1, 0, 5))
    assert [(p.label, seconds) for p, seconds in parts] == [("2026-11", 600.0), ("2026-12", 300.0)]
