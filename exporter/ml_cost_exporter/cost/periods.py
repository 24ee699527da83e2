"""Budget periods in UTC: their bounds and the label that names each one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Period:
    label: str  # "2026-11", "2026-11-23", "2026-W48", "2026-Q4", or "job"
    start: float  # Unix seconds, inclusive
    end: float  # Unix seconds, exclusive

    @property
    def length_seconds(self) -> float:
        return self.end - self.start


# A job budget's period is the job's whole life: one period, labelled "job", that never ends within any
# time a checkpoint can hold (timestamps are checked to lie between the years 2000 and 3000).
JOB_PERIOD = Period("job", datetime(2000, 1, 1, tzinfo=UTC).timestamp(), datetime(2999, 1, 1, tzinfo=UTC).timestamp())


def period_at(kind: str, timestamp: float) -> Period:
    """The budget period of `kind` (month, day, week, quarter, or job) that contains `timestamp`."""
    if kind == "job":
        return JOB_PERIOD
    moment = datetime.fromtimestamp(timestamp, UTC)
    if kind == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
        label = start.strftime("%Y-%m-%d")
    elif kind == "week":  # ISO weeks start on Monday
        start = (moment - timedelta(days=moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=7)
        year, week, _ = start.isocalendar()
        label = f"{year}-W{week:02d}"
    elif kind in ("month", "quarter"):
        months = 1 if kind == "month" else 3
        first_month = moment.month if kind == "month" else 3 * ((moment.month - 1) // 3) + 1
        start = moment.replace(month=first_month, day=1, hour=0, minute=0, second=0, microsecond=0)
        end_month = first_month + months
        end = start.replace(year=start.year + (end_month - 1) // 12, month=(end_month - 1) % 12 + 1)
        label = start.strftime("%Y-%m") if kind == "month" else f"{start.year}-Q{(first_month - 1) // 3 + 1}"
    else:
        raise ValueError(f"unknown period kind {kind!r}")
    return Period(label, start.timestamp(), end.timestamp())


def split_by_period(kind: str, start: float, end: float) -> list[tuple[Period, float]]:
    """The parts of [start, end) that fall in each period, as (period, seconds)."""
    parts = []
    cursor = start
    while cursor < end:
        period = period_at(kind, cursor)
        stop = min(end, period.end)
        parts.append((period, stop - cursor))
        cursor = stop
    return parts
