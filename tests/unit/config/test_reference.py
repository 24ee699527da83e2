"""The annotated config reference (exporter/examples/pricing.example.yaml) names every key the schema reads.

The schema is code, not a table, so the keys are taken from the parser itself: every key it asks a mapping
for while parsing the reference and a few configs that take the other branches (on-prem, an instance share,
a generic server, label selectors) must appear in the reference, set or commented out.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from ml_cost_exporter.config import located
from ml_cost_exporter.config.schema import parse_config
from tests.conftest import REPO

REFERENCE = REPO / "exporter" / "examples" / "pricing.example.yaml"
OTHER_BRANCHES = [
    """
    pricing: {provider: onprem, overrides: {gpu_hourly_usd: 2.0}, onprem: {gpu_purchase_usd: 25000}}
    allocation: {gpu: {type: a100-80gb, count: 1, mig_profile: 3g.40gb}, visible_devices: "0"}
    """,
    """
    pricing: {provider: aws, price_ratio: 0.8}
    allocation: {instance: {type: p4de.24xlarge, share: 0.25}}
    """,
    """
    models:
      - name: ranker
        server:
          preset: generic
          url: http://127.0.0.1:9000/metrics
          model_label: app
          version_label: rev
          version: "1"
          requests: {metric: my_requests_total, match: {status: "2.."}, scale: 1}
          prompt_tokens: {metric: my_prompt_tokens_total}
          generation_tokens: {metric: my_generated_tokens_total}
          compute_seconds: {metric: my_compute_us_total, scale: 1.0e-6}
    budgets:
      - {name: b, amount_usd: 10, selector: {models: [ranker], labels: {project: x}}}
    processes: {names: [python3], cmdline_patterns: ["vllm"]}
    """,
]


@pytest.fixture
def keys_read(monkeypatch) -> set[str]:
    """Every mapping key the parser asks for while the fixture is active."""
    parse_config("", "warm-up.yaml")  # the embedded catalog and presets are parsed (and cached) outside the watch
    keys: set[str] = set()
    original_raw, original_has = located.Section.raw, located.Section.has

    def raw(self, key):
        keys.add(key)
        return original_raw(self, key)

    def has(self, key):
        keys.add(key)
        return original_has(self, key)

    monkeypatch.setattr(located.Section, "raw", raw)
    monkeypatch.setattr(located.Section, "has", has)
    return keys


def test_reference_mentions_every_key_the_schema_reads(keys_read):
    reference = REFERENCE.read_text()
    parse_config(reference, REFERENCE.name)
    for text in OTHER_BRANCHES:
        parse_config(textwrap.dedent(text), "branch.yaml")
    assert len(keys_read) > 30, "the parser was not observed"
    undocumented = sorted(k for k in keys_read if not re.search(rf"(^|[\s{{,#-]){re.escape(k)}:", reference,
                                                                  re.MULTILINE))
    assert not undocumented, f"add these keys to {REFERENCE.name}, with their default: {undocumented}"


def test_the_check_notices_an_undocumented_key(keys_read):
    parse_config("collection: {interval_seconds: 15}\n", "x.yaml")
    assert "interval_seconds" in keys_read and "no_such_key" not in keys_read
