"""A narrow, fast reader of the Prometheus text format (and OpenMetrics text).

It pulls out only the samples whose names were asked for. A multiline search for
the wanted names at line starts skips every other line at C speed, which keeps
ingesting a 5,000-line vLLM exposition cheap (bench/bench_ingest.py). Each
candidate line is then matched on its own, and only if it is at most
`MAX_LINE_CHARS` long, by an expression in which every character has one
possible role: time is linear and memory bounded on any input, a 15 MB line
included (bench/bench_hostile.py measures it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_LINE_CHARS = 64 * 1024  # a sample line with its labels is well under a kilobyte; longer ones are skipped

# Unrolled loops ("normal* (special normal*)*"): no alternation can match the same character two ways.
_QUOTED = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_LABEL_PAIR = re.compile(rf'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*({_QUOTED})[ \t]*,?')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r'\\[\\"n]')
# After the name: an optional {labels} block (quoted values may hold braces), then the value token.
_REST = re.compile(rf'(?:\{{([^"}}\n]*(?:{_QUOTED}[^"}}\n]*)*)\}})?[ \t]+([^ \t\n]+)')


@dataclass(frozen=True)
class SamplePattern:
    """Finds the lines of the wanted metric names; built once per set of names."""

    names: re.Pattern[str]


def sample_pattern(names: Iterable[str]) -> SamplePattern:
    """A pattern selecting the sample lines of exactly these metric names."""
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return SamplePattern(re.compile(rf"^(?:{alternatives})(?=[{{ \t])", re.MULTILINE))


def parse_labels(text: str | None) -> dict[str, str] | None:
    """Label pairs of a `{...}` block's inside; None where the block is malformed."""
    if not text:
        return {}
    labels = {}
    position = 0
    for match in _LABEL_PAIR.finditer(text):
        if match.start() != position:
            return None
        value = match.group(2)[1:-1]
        if "\\" in value:
            value = _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], value)
        labels[match.group(1)] = value
        position = match.end()
    if text[position:].strip():
        return None
    return labels


def iter_samples(text: str, pattern: SamplePattern) -> Iterator[tuple[str, str, str]]:
    """(name, raw label block, raw value) for every sample line the pattern selects."""
    position = 0
    while (found := pattern.names.search(text, position)) is not None:
        end = text.find("\n", found.end())
        end = len(text) if end < 0 else end
        position = end + 1
        if end - found.start() > MAX_LINE_CHARS:
            continue
        rest = _REST.match(text, found.end(), end)
        if rest is not None:
            yield found.group(0), rest.group(1) or "", rest.group(2)


def not_metrics(text: str) -> str | None:
    """Why a body is not a metrics exposition at all (an HTML page, say), or None where it may be one.

    A login page or a proxy's error page answered with 200 must not read as a server that served nothing.
    """
    head = text[:512].lstrip().lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")):
        return "the body is an HTML page, not metrics (is the URL the metrics path, behind no login?)"
    if head.startswith(("{", "[")):
        return "the body is JSON, not the Prometheus text format"
    return None
