"""The monitoring mixin, rendered with the jsonnet package: the same rules and dashboards as the files."""

import importlib.util
import json
import subprocess

import _jsonnet
import yaml

from tests.conftest import REPO
from tests.support.binaries import tool

MIXIN = REPO / "mixin"


def render(overrides: str = "{}") -> dict:
    snippet = (f"local m = (import 'mixin/mixin.libsonnet') + {{_config+:: {overrides}}};"
               "{alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards}")
    return json.loads(_jsonnet.evaluate_snippet("render.jsonnet", snippet, jpathdir=[str(REPO)]))


def file_groups() -> list[dict]:
    paths = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    return [g for p in paths for g in yaml.safe_load(p.read_text())["groups"]]


def test_the_generated_mixin_files_match_the_rule_files_and_list_every_dashboard():
    # Loaded under its own name: k8s/generate.py is imported as `generate` by the manifest tests.
    spec = importlib.util.spec_from_file_location("mixin_generate", MIXIN / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, text in generate.generated().items():
        assert (MIXIN / name).read_text() == text, f"mixin/{name} drifted: run python mixin/generate.py"


def test_by_default_the_mixin_renders_exactly_the_files():
    out = render()
    groups = out["alerts"]["groups"] + out["rules"]["groups"]
    assert sorted(groups, key=lambda g: g["name"]) == sorted(file_groups(), key=lambda g: g["name"])
    assert all(any("alert" in r for r in g["rules"]) for g in out["alerts"]["groups"])
    assert all("record" in r for g in out["rules"]["groups"] for r in g["rules"])
    boards = {p.name: json.loads(p.read_text()) for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    assert out["dashboards"] == boards


def test_the_config_sets_thresholds_labels_and_links_and_promtool_accepts_it(tmp_path):
    # The selector is tested on expressions below: over every rule it takes minutes in the C++ jsonnet.
    out = render("""{alertFor: {MLCostCollectorFailing: '30m'},
                     alertSeverity: {MLCostGPUIdleHigh: 'warning'}, alertLabels: {team: 'finops'},
                     disabledAlerts: ['Watchdog'], grafanaURL: 'https://grafana.example.com',
                     runbookURLBase: 'https://runbooks.example.com/'}""")
    alerts = {r["alert"]: r for g in out["alerts"]["groups"] for r in g["rules"] if "alert" in r}
    assert "Watchdog" not in alerts
    failing = alerts["MLCostCollectorFailing"]
    assert failing["for"] == "30m" and alerts["MLCostSourceDown"]["for"] == "10m"
    assert alerts["MLCostGPUIdleHigh"]["labels"] == {"severity": "warning", "team": "finops"}
    assert failing["annotations"]["dashboard_url"].startswith("https://grafana.example.com/d/")
    assert failing["annotations"]["runbook_url"].startswith("https://runbooks.example.com/")
    path = tmp_path / "mixin.rules.yml"
    path.write_text(yaml.safe_dump({"groups": out["alerts"]["groups"] + out["rules"]["groups"]}))
    check = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_selector_reaches_every_exporter_series_and_skips_strings_and_recorded_series():
    exprs = ['sum by (model) (rate(mlcost_usd_total{a="mlcost_y"}[5m])) / model:mlcost_usd:rate5m'
             ' and inference_cost_per_1k_usd{}',
             "(up == 0) and on (job, instance) max_over_time(mlcost_exporter_build_info[1h])",
             'mlcost_exporter_source_up{source=~"server:.+"} == 0']
    matchers = json.dumps('job="j"')
    snippet = (f"local p = import 'mixin/lib/promql.libsonnet'; [p.withMatchers(e, {matchers}, p.exporterSeries)"
               f" for e in {json.dumps(exprs)}]")
    out = json.loads(_jsonnet.evaluate_snippet("t.jsonnet", snippet, jpathdir=[str(REPO)]))
    assert out == ['sum by (model) (rate(mlcost_usd_total{job="j",a="mlcost_y"}[5m])) / model:mlcost_usd:rate5m'
                   ' and inference_cost_per_1k_usd{job="j"}',
                   '(up == 0) and on (job, instance) max_over_time(mlcost_exporter_build_info{job="j"}[1h])',
                   'mlcost_exporter_source_up{job="j",source=~"server:.+"} == 0']
