"""The monitoring mixin, rendered with the jsonnet package: the same rules and dashboards as the files."""

import json
import re
import shutil
import subprocess

import _jsonnet
import yaml

from tests.conftest import REPO
from tests.support.binaries import tool
from tests.support.scripts import load_script

MIXIN = REPO / "mixin"


def render(overrides: str = "{}", jpath: str = str(REPO), name: str = "mixin") -> dict:
    snippet = (f"local m = (import '{name}/mixin.libsonnet') + {{_config+:: {overrides}}};"
               "{alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards}")
    return json.loads(_jsonnet.evaluate_snippet("render.jsonnet", snippet, jpathdir=[jpath]))


def file_groups() -> list[dict]:
    paths = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    return [g for p in paths for g in yaml.safe_load(p.read_text())["groups"]]


def load_generator():
    return load_script("mixin/generate.py")


def test_the_generated_mixin_files_match_the_rule_files_and_dashboards():
    generate = load_generator()
    wanted = generate.generated()
    for name, text in wanted.items():
        assert (MIXIN / name).read_text() == text, f"mixin/{name} drifted: run python mixin/generate.py"
    assert generate.stale() == [], "stale generated files: run python mixin/generate.py"
    copies = {name for name in wanted if name.startswith("dashboards/")}
    assert copies == {f"dashboards/{p.name}" for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    for name in copies:
        assert wanted[name] == (REPO / "grafana" / name).read_text()  # byte for byte


def test_everything_the_mixin_imports_lives_under_mixin():
    imports = []
    for path in MIXIN.rglob("*.libsonnet"):
        imports += [(path, target) for target in re.findall(r"import(?:str)?\s+'([^']+)'", path.read_text())]
    assert len(imports) >= 12
    for path, target in imports:
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(MIXIN) and resolved.is_file(), f"{path.relative_to(REPO)} imports {target}"


def test_a_vendored_copy_of_mixin_alone_renders_what_the_repository_does(tmp_path):
    """As jsonnet-bundler installs it (`jb install github.com/ml-cost-exporter/ml-cost-exporter/mixin@main`):
    the directory alone under vendor/<its import path>, with the legacy name beside it; nothing else of the
    repository is there."""
    vendor = tmp_path / "vendor"
    installed = vendor / "github.com" / "ml-cost-exporter" / "ml-cost-exporter" / "mixin"
    shutil.copytree(MIXIN, installed, ignore=shutil.ignore_patterns("generate.py", "__pycache__"))
    (vendor / "ml-cost-exporter-mixin").symlink_to(installed, target_is_directory=True)
    expected = render()
    assert render(jpath=str(vendor), name="github.com/ml-cost-exporter/ml-cost-exporter/mixin") == expected
    assert render(jpath=str(vendor), name="ml-cost-exporter-mixin") == expected
    assert json.loads((MIXIN / "jsonnetfile.json").read_text())["dependencies"] == []


def test_hiding_the_cluster_variable_as_kubernetes_mixin_does():
    out = render("{showMultiCluster: false}")
    for name, board in out["dashboards"].items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["cluster"]["hide"] == 2 and variables["cluster"]["allValue"] == ".*", name
        assert variables["datasource"]["hide"] == 0


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
