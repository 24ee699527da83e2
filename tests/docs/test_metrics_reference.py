"""Every metric family the collectors can emit is in the generated metrics reference."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
EXPOSITION = REPO / "exporter" / "ml_cost_exporter" / "exposition"
# A family name as the collectors write it: the first argument of a metric family, or of family().
_FAMILY_NAME = re.compile(r'"((?:mlcost_|inference_)[a-z0-9_]+)"')


def emitted_families() -> set[str]:
    names = set()
    for path in EXPOSITION.glob("*.py"):
        names.update(_FAMILY_NAME.findall(path.read_text()))
    return names


def test_every_family_the_collectors_can_emit_is_in_the_reference():
    page = (REPO / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_:0-9]+)` \|", page, re.MULTILINE))
    missing = sorted(n for n in emitted_families() if n not in listed and f"{n}_total" not in listed)
    assert len(emitted_families()) > 50, "the family names were not found in the collectors' source"
    assert missing == [], "families the collectors emit but no saved output shows: add them to a golden scenario"


def test_every_config_section_is_described_and_every_key_listed():
    generate = load_script("docs/generate.py")
    page = (REPO / "docs" / "configuration.md").read_text()
    keys = generate.config_keys()
    sections = {key for path, key in keys if path == ""} - {"providers", "gpu_types", "onprem"}  # overlay's own
    described = set(re.findall(r"^\| `([a-z_]+)` \| [^|]*[a-z]", page, re.MULTILINE))
    assert len(sections) >= 11, "the schema's sections were not recorded"
    assert sections - described == set(), "a config section has no row in the sections table"
    for path, key in keys:
        assert f"| `{f'{path}.{key}' if path else key}` |" in page
