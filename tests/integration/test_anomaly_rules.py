"""The input series of prometheus/tests/anomaly.test.yml, generated here and checked for drift.

The file holds five weeks of counters as promtool run-length segments; they are
written from the shapes below (`python -m tests.integration.test_anomaly_rules`
rewrites them), and promtool runs the file with the other rule tests
(test_rules_and_routes.py). Samples are 15 minutes apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import yaml

from tests.conftest import REPO

TEST_FILE = REPO / "prometheus" / "tests" / "anomaly.test.yml"
HOUR = 4  # samples
DAY = 24 * HOUR
WEEK = 7 * DAY
WEEKLY_SCALES = (1.0, 1.125, 0.875, 1.0625, 1.03125)  # exact in binary, so expected values are exact


def segments(increments: Iterable[float], resets: Iterable[int] = ()) -> str:
    """promtool values of a counter rising by these increments (the first is its start), back to 0 at `resets`."""
    values, value, resets = [], 0.0, set(resets)
    for index, increment in enumerate(increments):
        value = 0.0 if index in resets else value + increment if index else 0.0
        values.append(round(value, 6))
    parts, start = [], 0
    while start < len(values):
        end = start
        step = round(values[start + 1] - values[start], 6) if start + 1 < len(values) else 0.0
        while step >= 0 and end + 1 < len(values) and round(values[end + 1] - values[end], 6) == step:
            end += 1
        parts.append(f"{values[start]:g}+{step:g}x{end - start}" if end > start else f"{values[start]:g}")
        start = end + 1
    return " ".join(parts)


def absent_until(index: int, rest: str) -> str:
    return f"_x{index} {rest}"


def weekly_pattern(weekday_day: float, weekday_night: float, weekend: float, scales: Iterable[float]) -> list[float]:
    """Per-sample increments: weekdays 08:00-20:00 and nights, weekends (days 5 and 6), each week scaled."""
    increments = []
    for scale in scales:
        for day in range(7):
            for sample in range(DAY):
                hour = sample // HOUR
                base = weekend if day >= 5 else weekday_day if 8 <= hour < 20 else weekday_night
                increments.append(base * scale)
    return increments


STEP_AT = 4 * WEEK + 3 * DAY + 10 * HOUR + 2  # 4w3d10h30m
RESET_AT = 4 * WEEK + 2 * DAY + 5 * HOUR + 1  # 4w2d5h15m
REPLACED_AT = 4 * WEEK + 4 * DAY + 3 * HOUR  # 4w4d3h
FIVE_WEEKS = 5 * WEEK + 1
COLD = 2 * WEEK + DAY + 1 + WEEK + 2 * HOUR

USD = 'mlcost_usd_total{model="m",version="v1",workload="inference",resource="gpu",instance="%s"}'
REQUESTS = 'mlcost_requests_total{model="m",version="v1",instance="%s"}'
SERIES: dict[str, dict[str, Callable[[], str]]] = {
    "a step to twice the usual hourly cost fires within two hours": {
        USD % "pod-a": lambda: segments([1.0] * (STEP_AT + 1) + [2.0] * (6 * HOUR)),
        REQUESTS % "pod-a": lambda: segments([250] * (STEP_AT + 1 + 6 * HOUR)),
    },
    "a slow drift does not fire": {
        USD % "pod-a": lambda: segments(1 + 0.01 * (i // DAY) for i in range(FIVE_WEEKS)),
        REQUESTS % "pod-a": lambda: segments([250] * FIVE_WEEKS),
    },
    "a weekly pattern over four weeks never fires": {
        USD % "pod-a": lambda: segments([*weekly_pattern(2.0, 0.5, 0.25, WEEKLY_SCALES), 0.25]),
        REQUESTS % "pod-a": lambda: segments([*weekly_pattern(500, 125, 62.5, [1] * 5), 62.5]),
    },
    "a counter reset or a replaced pod does not fire": {
        USD % "pod-a": lambda: segments([1.0] * REPLACED_AT, resets=[RESET_AT]),
        REQUESTS % "pod-a": lambda: segments([250] * REPLACED_AT, resets=[RESET_AT]),
        USD % "pod-b": lambda: absent_until(REPLACED_AT, segments([1.0] * (FIVE_WEEKS - REPLACED_AT))),
        REQUESTS % "pod-b": lambda: absent_until(REPLACED_AT, segments([250] * (FIVE_WEEKS - REPLACED_AT))),
    },
    "cold start gives no baseline and no alert until three weeks of history": {
        USD % "pod-a": lambda: segments([1.0] * (2 * WEEK + DAY + 1) + [3.0] * (WEEK + 2 * HOUR)),
        REQUESTS % "pod-a": lambda: segments([250] * COLD),
    },
}


def committed() -> dict[str, dict[str, str]]:
    tests = yaml.safe_load(TEST_FILE.read_text())["tests"]
    return {test["name"]: {s["series"]: s["values"] for s in test["input_series"]} for test in tests}


def expected() -> dict[str, dict[str, str]]:
    return {name: {series: make() for series, make in made.items()} for name, made in SERIES.items()}


def test_segments_are_promtool_run_lengths_with_resets():
    assert segments([1, 1, 1, 2, 2]) == "0+1x2 4+2x1"
    assert segments([1, 1, 1, 1], resets=[2]) == "0+1x1 0+1x1"
    assert segments([0.5] * 3) == "0+0.5x2"


def test_the_committed_input_series_are_the_generated_ones():
    assert committed() == expected(), "run: python -m tests.integration.test_anomaly_rules"


def write() -> None:
    """Put the generated values into the test file, leaving everything else as written."""
    text = TEST_FILE.read_text()
    for name, series in expected().items():
        for selector, values in series.items():
            pattern = re.compile(r"(\{series: '" + re.escape(selector) + r"', values: ')[^']*(')")
            head, _, tail = text.partition(f"- name: {name}\n")
            block, sep, rest = tail.partition("\n  - name: ")
            text = head + f"- name: {name}\n" + pattern.sub(lambda m, v=values: m[1] + v + m[2], block) + sep + rest
    TEST_FILE.write_text(text)


if __name__ == "__main__":
    write()
