"""Property-based fuzzing of every parser that reads outside input: it either parses or says why, nothing else.

Each target is one entry in TARGETS: a name, a text strategy and a function that
must return or raise only the listed error types. Adding a parser (the ledger's
checkpoint reader, say) is one more entry. CI runs a fixed, derandomized,
bounded number of examples; MLCOST_FUZZ_EXAMPLES=20000 runs a longer search.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.ledger import CostLedger, Usage
from ml_cost_exporter.cost.pricing import ResolvedAllocation, price_allocation
from ml_cost_exporter.exposition.front import _BadRequest, parse_request
from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern
from ml_cost_exporter.sources.server import ServerSource
from ml_cost_exporter.storage.checkpoint import decode, encode
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


def _ledger() -> CostLedger:
    config = parse_config(VLLM_MODELS + "budgets: [{name: b, amount_usd: 10}]\n", "p.yaml")
    rates = price_allocation(config, ResolvedAllocation(config.catalog.gpu_types["l4"], 1.0, 4.0, 16.0))
    return CostLedger(config, rates, 1_794_787_200.0)


def _checkpoint_seed() -> str:
    ledger = _ledger()
    ledger.record(Usage(1_794_787_200.0, 1_794_787_260.0, requests={("llama", "latest"): 7}))
    return json.dumps(ledger.export_state())


CHECKPOINT_SECTION = _checkpoint_seed()
CHECKPOINT_FILE = encode({"ledger": json.loads(CHECKPOINT_SECTION)}, 1_794_787_260.0).decode()


def _restore(text: str) -> object:
    """A tampered ledger section inside a well-formed, correctly checksummed file: restore validates it."""
    try:
        section = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None  # not JSON: the file-level target covers undecodable bytes
    _written, sections = decode(encode({"ledger": section}, 1_794_787_260.0))
    _ledger().restore_state(sections["ledger"])
    return sections


PATTERN = sample_pattern(["vllm:request_success_total", "vllm:prompt_tokens_total"])

TARGETS = [
    Target("config", st.one_of(_mutations(CONFIG_SEED, YAML_ALPHABET), st.text(YAML_ALPHABET, max_size=200)),
           lambda text: parse_config(text, "p.yaml"), (ConfigError,)),
    Target("exposition", st.one_of(_mutations(VLLM, EXPOSITION_ALPHABET), st.text(max_size=300)),
           lambda text: [parse_labels(labels) for _n, labels, _v in iter_samples(text, PATTERN)]),
    Target("server-ingest", _mutations(VLLM, EXPOSITION_ALPHABET), _ingest),
    Target("checkpoint-file", _mutations(CHECKPOINT_FILE, '{}[]",:.0123456789-eEtruefalsn ').map(str.encode),
           decode, (ValueError,)),
    Target("checkpoint-ledger", _mutations(CHECKPOINT_SECTION, '{}[]",:.0123456789-eEtruefalsnNI '), _restore,
           (ValueError, TypeError, KeyError)),
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
