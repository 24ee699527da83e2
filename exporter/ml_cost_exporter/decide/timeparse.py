"""Durations ("30d", "6h") and instants (RFC 3339, a date, Unix seconds) given on the command line, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from ml_cost_exporter.config import units
from ml_cost_exporter.decide.errors import UsageError


def parse_duration(text: str, flag: str) -> float:
    """Seconds in a Prometheus-style duration such as "30d", "1h30m"; must be positive."""
    try:
        seconds = units.parse_duration(text.strip())
    except ValueError:
        raise UsageError(f'{flag}: "{text}" is not a duration like 30d, 6h or 1h30m') from None
    if seconds <= 0:
        raise UsageError(f"{flag}: the duration must be positive")
    return seconds


def parse_instant(text: str, flag: str) -> float:
    """Unix seconds of an RFC 3339 time, a YYYY-MM-DD date (midnight UTC) or a Unix timestamp."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f'{flag}: "{text}" is not a time (2026-03-01, 2026-03-01T12:00:00Z or Unix seconds)') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(timestamp: float) -> str:
    """A UTC timestamp as 2026-03-01T00:00:00Z."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def promql_duration(seconds: float) -> str:
    """Whole seconds as a PromQL range, in the largest unit that divides it."""
    seconds = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
