"""The runbook and dashboard links: one default, written by the rule generator, that the mixin's defaults match."""

from __future__ import annotations

import re

from tests.conftest import REPO
from tests.support.scripts import load_script


def generator():
    return load_script("prometheus/generate.py")


def test_the_mixin_replaces_exactly_the_prefix_the_rule_generator_writes():
    config = (REPO / "mixin" / "config.libsonnet").read_text()
    runbook_base = re.search(r"runbookURLBase: '([^']+)'", config).group(1)
    grafana = re.search(r"grafanaURL: '([^']+)'", config).group(1)
    rules = generator()
    assert rules.RUNBOOK_URL_BASE.startswith(runbook_base)
    assert grafana == rules.DASHBOARD_URL_BASE
    written = "".join(p.read_text() for p in (REPO / "prometheus" / "rules").glob("*.rules.yml"))
    links = re.findall(r"runbook_url: (\S+)", written)
    assert links and all(link.startswith(rules.RUNBOOK_URL_BASE + "#") for link in links)
