"""The rules as a contract: fleet-scale windows, portability to Thanos Ruler and Mimir, and links that resolve."""

import json
import re
import subprocess

import yaml

from tests.conftest import REPO
from tests.support.binaries import tool
from tests.support.scripts import load_script

RULES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
# A range selector or subquery with its optional offset: `metric{...}[1h] offset 1h`.
RANGE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*\[(\d+[smhdwy])(?::[^\]]*)?\]"
                   r"(?:\s+offset\s+(\d+(?:ms|[smhdwy])))?")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Functions every ruler built on the Prometheus 2.4x engine evaluates (Thanos Ruler, Mimir ruler).
PORTABLE_FUNCTIONS = {"sum", "max", "min", "avg", "count", "rate", "increase", "resets", "last_over_time",
                      "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "time", "vector",
                      "round", "clamp_min", "label_replace"}


def seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(\D+)", duration).groups()
    return int(number) * UNITS[unit]


def groups() -> list[dict]:
    return [group for path in RULES for group in yaml.safe_load(path.read_text())["groups"]]


def rules() -> list[dict]:
    return [rule for group in groups() for rule in group["rules"]]


def test_raw_exporter_series_are_read_over_bounded_windows():
    """Per evaluation, raw series are read over three hours at most, and the budget counters over ten minutes
    (their latest sample, or the last one of a series that just stopped) except by the burn rates of an hour
    or less (rate()); per-series recordings over ten minutes, the hourly snapshots over four hours (a minute
    late); the hourly group reads raw and per-series series over 26 hours once an hour."""
    for group in groups():
        hourly = group.get("interval") == "1h"
        for rule in group["rules"]:
            name = rule.get("record") or rule["alert"]
            for metric, _, window, offset in RANGE.findall(rule["expr"]):
                span = seconds(window) + (seconds(offset) if offset else 0)
                if metric.startswith("series:"):
                    limit = 26 * 3600 + 1 if hourly else 4 * 3600 + 60 if metric.endswith(":at_hour") else 10 * 60
                elif ":" in metric:
                    continue
                elif hourly and metric.startswith("mlcost_"):
                    limit = 26 * 3600
                elif metric == "mlcost_budget_spend_usd_total":
                    limit = 3600 if name.startswith("budget:mlcost_budget_spend_usd:rate") else 10 * 60
                else:
                    limit = 3 * 3600
                assert span <= limit, (name, metric, window)


def test_rules_use_only_features_every_ruler_evaluates():
    for rule in rules():
        expr = rule["expr"]
        name = rule.get("record") or rule["alert"]
        assert not re.search(r"\bjob\s*[=!]~?", expr), f"{name} depends on a scrape job name"
        assert " @ " not in expr and "@ start()" not in expr and "@ end()" not in expr, name
        called = set(re.findall(r"\b([a-z_]+)\s*\(", expr)) - {"by", "on", "without", "ignoring",
                                                               "group_left", "group_right", "and", "or", "unless"}
        assert called <= PORTABLE_FUNCTIONS, (name, called - PORTABLE_FUNCTIONS)


def test_every_rule_expression_parses_in_the_rulers_promql_dialect(tmp_path):
    """Each expression alone through promtool 2.42, the engine Thanos 0.31 and Mimir 2.7 rulers embed."""
    promtool = tool("promtool")
    assert promtool
    for index, rule in enumerate(rules()):
        single = tmp_path / f"r{index}.yml"
        body = {k: v for k, v in rule.items() if k in ("record", "alert", "expr", "for", "labels")}
        single.write_text(yaml.safe_dump({"groups": [{"name": "one", "rules": [body]}]}))
        result = subprocess.run([promtool, "check", "rules", str(single)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+)$", markdown, flags=re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_every_alert_links_its_own_runbook_anchor_and_an_existing_dashboard():
    anchors = github_anchors((REPO / "docs" / "runbooks.md").read_text())
    uids = {json.loads(p.read_text())["uid"] for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    alerts = [rule for rule in rules() if "alert" in rule]
    assert alerts
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert "/docs/runbooks.md#" in url, url
        anchor = url.rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower() and anchor in anchors, (rule["alert"], anchor)
        uid = re.search(r"/d/([^/]+)/", rule["annotations"]["dashboard_url"]).group(1)
        assert uid in uids, (rule["alert"], uid)


def load_generator():
    return load_script("prometheus/generate.py")


def test_rule_files_are_what_the_generator_writes_from_their_sources():
    """prometheus/rules/ is generated from prometheus/src/: run `python prometheus/generate.py` after a change."""
    generated = load_generator().generated()
    assert sorted(generated) == RULES
    for path, text in generated.items():
        assert path.read_text() == text, f"{path.name} drifted from its source"


def test_one_setting_moves_every_runbook_and_dashboard_link():
    generated = load_generator().generated("https://runbooks.example.com/runbooks.md", "https://grafana.example.com")
    alerts = [rule for text in generated.values() for group in yaml.safe_load(text)["groups"]
              for rule in group["rules"] if "alert" in rule]
    assert len({rule["alert"] for rule in alerts}) == 13  # MLCostAnomaly included
    for rule in alerts:
        assert rule["annotations"]["runbook_url"] == f"https://runbooks.example.com/runbooks.md#{rule['alert'].lower()}"
        assert rule["annotations"]["dashboard_url"].startswith("https://grafana.example.com/d/")
