"""The ledger's totals as a plain JSON-able document, and its strict reading back.

A checkpoint is input like any other: it may be truncated, edited or written by
another build. Decoding validates every row (types, finite, non-negative, within
bounds a real pod cannot exceed) and raises ValueError naming the first bad
place, so a ledger never adopts a value it cannot trust.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ml_cost_exporter.cost.pricing import RESOURCES

TOKEN_KINDS = ("prompt", "generation")
# No pod costs this much an hour (the largest catalog instance is under $100/h): a total
# above max(hours lived, 1 h) x this bound, or a rate above it, was not written by a ledger.
MAX_POD_USD_PER_HOUR = 10_000.0
MAX_COUNT = 1e18  # requests or tokens
MAX_ROWS = 100_000  # per table; the file's byte cap bounds memory first
MAX_NAME_LENGTH = 512
EARLIEST, LATEST = 946_684_800.0, 32_503_680_000.0  # 2000-01-01 .. 3000-01-01 UTC


@dataclass(frozen=True)
class LedgerState:
    """What a ledger needs to continue its counters where a previous process left them."""

    since: float  # when accrual began (the first process of the pod)
    accrued_until: float  # end of the last interval accrued
    usd: Mapping[tuple[str, str, str, str], float]
    idle: Mapping[tuple[str, str, str], float]
    requests: Mapping[tuple[str, str], float]
    failed_requests: Mapping[tuple[str, str], float]
    tokens: Mapping[tuple[str, str, str], float]
    budget_spend: Mapping[tuple[str, str], tuple[float, float]]  # (budget, period) -> (usd, period end)
    window: Mapping[tuple[str, str], tuple[tuple[float, float, float], ...]]  # (end, usd, requests)
    shares: Mapping[tuple[str, str], float]
    rates: Mapping[str, float]  # USD per hour by resource, energy at the GPUs' TDP


def encode(state: LedgerState) -> dict:
    """The state as JSON-able lists of rows (tuple keys do not map to JSON objects)."""
    return {
        "since": state.since,
        "accrued_until": state.accrued_until,
        "usd": [[*k, v] for k, v in sorted(state.usd.items())],
        "idle": [[*k, v] for k, v in sorted(state.idle.items())],
        "requests": [[*k, v] for k, v in sorted(state.requests.items())],
        "failed_requests": [[*k, v] for k, v in sorted(state.failed_requests.items())],
        "tokens": [[*k, v] for k, v in sorted(state.tokens.items())],
        "budget_spend": [[*k, *v] for k, v in sorted(state.budget_spend.items())],
        "window": [[*k, *entry] for k, entries in sorted(state.window.items()) for entry in entries],
        "shares": [[*k, v] for k, v in sorted(state.shares.items())],
        "rates": dict(sorted(state.rates.items())),
    }


def _name(value: object, where: str, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{where}: expected a non-empty name, got {_show(value)}")
    if choices is not None and value not in choices:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value


def _number(value: object, where: str, maximum: float, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where}: {number} is not finite")
    if not minimum <= number <= maximum:
        raise ValueError(f"{where}: {number:g} is outside [{minimum:g}, {maximum:g}]")
    return number


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rows(document: Mapping, key: str, names: int, numbers: int) -> list[list]:
    rows = document.get(key, [])
    if not isinstance(rows, list):
        raise ValueError(f"{key}: expected a list of rows, got {_show(rows)}")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"{key}: {len(rows)} rows, more than {MAX_ROWS}")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != names + numbers:
            raise ValueError(f"{key}[{index}]: expected {names} names and {numbers} numbers, got {_show(row)}")
    return rows


def _table(document: Mapping, key: str, maximum: float, choices: tuple[str, ...] | None = None,
           names: int = 2) -> dict[tuple, float]:
    """Rows of `names` names then one value; the last name is checked against `choices`."""
    table: dict[tuple, float] = {}
    for index, row in enumerate(_rows(document, key, names, 1)):
        where = f"{key}[{index}]"
        labels = tuple(_name(v, where, choices if i == names - 1 else None) for i, v in enumerate(row[:names]))
        if labels in table:
            raise ValueError(f"{where}: {labels} appears twice")
        table[labels] = _number(row[names], where, maximum)
    return table


def _time(document: Mapping, key: str) -> float:
    if key not in document:
        raise ValueError(f"{key}: missing")
    return _number(document[key], key, LATEST, EARLIEST)


def decode(document: object) -> LedgerState:
    """Read an encoded state back; raises ValueError naming the first thing wrong."""
    if not isinstance(document, dict):
        raise ValueError(f"expected an object, got {_show(document)}")
    since, accrued_until = _time(document, "since"), _time(document, "accrued_until")
    if accrued_until < since:
        raise ValueError(f"accrued_until {accrued_until:.0f} is before since {since:.0f}")
    usd_bound = max((accrued_until - since) / 3600.0, 1.0) * MAX_POD_USD_PER_HOUR
    usd = _table(document, "usd", usd_bound, RESOURCES, names=4)
    if sum(usd.values()) > usd_bound:
        raise ValueError(f"usd: the totals add up to more than a pod can cost in {accrued_until - since:.0f} s")
    spend: dict[tuple[str, str], tuple[float, float]] = {}
    for index, row in enumerate(_rows(document, "budget_spend", 2, 2)):
        where = f"budget_spend[{index}]"
        spend[(_name(row[0], where), _name(row[1], where))] = (_number(row[2], where, usd_bound),
                                                               _number(row[3], where, LATEST, EARLIEST))
    window: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for index, row in enumerate(_rows(document, "window", 2, 3)):
        where = f"window[{index}]"
        key = (_name(row[0], where), _name(row[1], where))
        window.setdefault(key, []).append((_number(row[2], where, LATEST, EARLIEST),
                                           _number(row[3], where, usd_bound), _number(row[4], where, MAX_COUNT)))
    shares = _table(document, "shares", 1.0)
    if sum(shares.values()) > 1.0 + 1e-6:
        raise ValueError(f"shares: they add up to {sum(shares.values()):g}, more than 1")
    rates = document.get("rates", {})
    if not isinstance(rates, dict):
        raise ValueError(f"rates: expected an object, got {_show(rates)}")
    return LedgerState(
        since=since,
        accrued_until=accrued_until,
        usd=usd,
        idle=_table(document, "idle", usd_bound, RESOURCES, names=3),
        requests=_table(document, "requests", MAX_COUNT),
        failed_requests=_table(document, "failed_requests", MAX_COUNT),
        tokens=_table(document, "tokens", MAX_COUNT, TOKEN_KINDS, names=3),
        budget_spend=spend,
        window={k: tuple(sorted(v)) for k, v in window.items()},
        shares=shares,
        rates={_name(k, "rates", RESOURCES): _number(v, f"rates.{k}", MAX_POD_USD_PER_HOUR) for k, v in rates.items()},
    )
