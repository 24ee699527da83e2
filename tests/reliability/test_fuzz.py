"""Property-based fuzzing of every parser that reads outside input: it either parses or says why, nothing else.

Each target is one entry in TARGETS: a name, a text strategy and a function that
must return or raise only the listed error types. Adding a parser (the ledger's
checkpoint reader, say) is one more entry. CI runs a fixed, derandomized,
bounded number of examples; MLCOST_FUZZ_EXAMPLES=20000 runs a longer search.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.exposition.front import _BadRequest, parse_request
from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern
from ml_cost_exporter.sources.server import ServerSource
from tests.conftest import FIXTURES

EXAMPLES = int(os.environ.get("MLCOST_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Target:
    name: str
    inputs: st.SearchStrategy
    parse: Callable[[object], object]
    allowed: tuple[type[BaseException], ...] = ()


def _mutations(seed: str, alphabet: str) -> st.SearchStrategy[str]:
    """Real text with a slice replaced by fuzz: keeps the parser deep in its grammar, not at line 1."""
    return st.builds(lambda at, cut, junk: seed[:at] + junk + seed[at + cut:],
                     st.integers(0, len(seed)), st.integers(0, 40), st.text(alphabet, max_size=40))


CONFIG_SEED = (FIXTURES.parent.parent / "exporter" / "examples" / "pricing.example.yaml").read_text()
YAML_ALPHABET = " \n\t:-[]{},&*!|>'\"#%@`?0123456789abcxyz_."
VLLM = (FIXTURES / "servers" / "vllm.txt").read_text()
EXPOSITION_ALPHABET = ' \n\t{}=",#\\.eE+-0123456789_abcvllm:NaInf\x00\ufffd'
VLLM_MODELS = ("models:\n  - {name: llama, server: {preset: vllm, url: 'http://server/metrics', "
               "model: 'meta-llama/Llama-3.1-8B-Instruct'}}\n")


def _ingest(text: str) -> object:
    source = ServerSource("http://server/metrics", parse_config(VLLM_MODELS, "p.yaml").models, timeout=1,
                          max_bytes=1 << 20, max_series=100, interval=15, fetch=lambda _url: text)
    source.sample()
    reading = source.sample()
    assert reading.ok
    assert all(v >= 0 for quantities in reading.deltas.values() for v in quantities.values())
    return reading


PATTERN = sample_pattern(["vllm:request_success_total", "vllm:prompt_tokens_total"])

TARGETS = [
    Target("config", st.one_of(_mutations(CONFIG_SEED, YAML_ALPHABET), st.text(YAML_ALPHABET, max_size=200)),
           lambda text: parse_config(text, "p.yaml"), (ConfigError,)),
    Target("exposition", st.one_of(_mutations(VLLM, EXPOSITION_ALPHABET), st.text(max_size=300)),
           lambda text: [parse_labels(labels) for _n, labels, _v in iter_samples(text, PATTERN)]),
    Target("server-ingest", _mutations(VLLM, EXPOSITION_ALPHABET), _ingest),
    Target("http-request", st.binary(max_size=300).map(lambda b: b"GET / HTTP/1.1\r\n" + b),
           parse_request, (_BadRequest,)),
]


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_a_parser_either_parses_or_raises_its_own_error(target: Target):
    @FUZZ
    @given(target.inputs)
    def run(text):
        try:
            target.parse(text)
        except target.allowed as exc:
            assert "\n" not in str(exc), f"{target.name}: a multi-line error: {exc!r}"

    run()
