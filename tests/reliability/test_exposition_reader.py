"""The exposition reader on huge and pathological lines: linear time, memory bounded by the body, same answers."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_cost_exporter.sources.expfmt import MAX_LINE_CHARS, iter_samples, sample_pattern

NAMES = ("vllm:prompt_tokens_total", "vllm:num_requests_running")
PATTERN = sample_pattern(NAMES)
HUGE = 15_000_000
HUGE_LINES = {
    "unclosed label block": "vllm:prompt_tokens_total{" + "a" * HUGE,
    "unclosed quoted value": 'vllm:prompt_tokens_total{a="' + "x" * HUGE,
    "escapes without an end": 'vllm:prompt_tokens_total{a="' + "\\\\" * (HUGE // 2),
    "many label pairs": "vllm:prompt_tokens_total{" + 'a="1",' * (HUGE // 6) + "} 1",
    "quotes in the block": "vllm:prompt_tokens_total{" + '""' * (HUGE // 2),
    "spaces before no value": "vllm:prompt_tokens_total" + " " * HUGE,
    "no wanted name": "x" * HUGE,
    "no newline, every name": " ".join(NAMES) * (HUGE // 50),
}


def old_pattern(names) -> re.Pattern[str]:
    """The whole-text expression this reader replaced: the reference for what a sample line is."""
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return re.compile(rf'^({alternatives})(?:\{{((?:[^"}}\n]|"(?:[^"\\\n]|\\.)*")*)\}})?[ \t]+([^ \t\n]+)',
                      re.MULTILINE)


@pytest.mark.parametrize("line", HUGE_LINES.values(), ids=HUGE_LINES.keys())
@pytest.mark.parametrize("after", ["", "\nvllm:num_requests_running 3\n"], ids=["alone", "then-a-sample"])
def test_a_15_mb_line_costs_memory_of_at_most_a_line_cap_and_later_samples_are_still_read(line, after):
    text = line + after
    tracemalloc.start()
    try:
        samples = list(iter_samples(text, PATTERN))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_CHARS  # the old expression took gigabytes here
    assert samples == ([("vllm:num_requests_running", "", "3")] if after else [])


ALPHABET = st.sampled_from(['vllm:prompt_tokens_total', 'vllm:num_requests_running', "{", "}", '"', "\\", "=",
                            ",", " ", "\t", "\n", "a", "1", "x_y", "NaN", "#"])


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.lists(ALPHABET, max_size=60).map("".join))
def test_the_reader_selects_exactly_what_the_old_expression_selected(text):
    old = [(m.group(1), m.group(2) or "", m.group(3)) for m in old_pattern(NAMES).finditer(text)]
    assert list(iter_samples(text, PATTERN)) == old


def test_a_sample_line_over_the_cap_is_skipped_and_one_just_under_it_is_read():
    name = "vllm:prompt_tokens_total"

    def line(length: int) -> str:
        block = 'a="' + "v" * (length - len(name) - 8) + '"'
        return f"{name}{{{block}}} 1"

    assert len(line(MAX_LINE_CHARS)) == MAX_LINE_CHARS
    assert len(list(iter_samples(line(MAX_LINE_CHARS) + "\n", PATTERN))) == 1
    assert list(iter_samples(line(MAX_LINE_CHARS + 1) + "\n", PATTERN)) == []
