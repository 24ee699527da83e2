"""The Grafana dashboards: what provisioning loads, and every panel query answered by real Prometheus."""

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import A100, GIB, REPO, wait_until
from tests.support.binaries import start_demo_server, start_exporter, start_prometheus
from tests.support.scripts import load_script

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
VARIABLES = {"cluster": ".*", "namespace": ".*", "job": ".+", "instance": ".+", "model": "chat", "budget": "demo",
             "__rate_interval": "1m"}  # Grafana fills the last


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def provisioned_datasource() -> dict:
    provisioning = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = provisioning["datasources"]
    return datasource


def test_dashboards_are_what_the_generator_writes():
    rendered = load_script("grafana/build_dashboards.py").render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], f"{path.name} drifted: run python grafana/build_dashboards.py"


def datasource_refs(node, where: str = "") -> list[tuple[str, object]]:
    """Every `datasource` reference anywhere in a dashboard (panels, targets, variables, annotations)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((where, value))
            name = node.get("title") or node.get("refId") or node.get("name") or key
            found += datasource_refs(value, f"{where}/{name}")
    elif isinstance(node, list):
        for item in node:
            found += datasource_refs(item, where)
    return found


def fixed_datasources(board: dict) -> list[str]:
    """References to a datasource by anything but the dashboard's `datasource` variable."""
    return [f"{where}: {ref}" for where, ref in datasource_refs(board)
            if not (isinstance(ref, dict) and ref.get("uid") in ("${datasource}", "$datasource"))]


def test_no_panel_target_or_variable_names_a_fixed_datasource():
    for path in DASHBOARDS:
        board = load(path)
        refs = datasource_refs(board)
        assert len(refs) > len(board["panels"]), path.name  # every panel and target is looked at
        assert fixed_datasources(board) == [], path.name
    # The check fails on what dashboards used to carry: a panel (or target) naming a datasource by its uid.
    board = load(DASHBOARDS[0])
    board["panels"][0]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "mlcost-prometheus"}
    board["panels"][1]["datasource"] = "Prometheus"
    assert len(fixed_datasources(board)) == 2


def test_dashboards_have_the_structure_provisioning_loads():
    # The compose stack's Grafana provisions one Prometheus, the default one: the `datasource` variable's
    # "default" resolves to it, so the stack shows the same dashboards unchanged.
    datasource = provisioned_datasource()
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mlcost.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    for path in DASHBOARDS:
        board = load(path)
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
        assert board["title"] and board["panels"]
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids)
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == "default"
        for panel in board["panels"]:
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["targets"]
            for target in panel["targets"]:
                assert target["expr"] and target["refId"]


def test_every_alert_dashboard_link_opens_a_provisioned_dashboard():
    uids = {load(p)["uid"] for p in DASHBOARDS}
    linked = set()
    for rules in (REPO / "prometheus" / "rules").glob("*.yml"):
        linked.update(re.findall(r"/d/([a-z0-9-]+)/", rules.read_text()))
    assert linked and linked <= uids


def substitute(expr: str) -> str:
    return re.sub(r"\$(\w+)", lambda m: VARIABLES[m.group(1)], expr)


PANEL_QUERIES = [(path.name, panel["title"], target["expr"])
                 for path in DASHBOARDS for panel in load(path)["panels"] for target in panel["targets"]]


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory, fake_nvml_library):
    """The demo server, the exporter (one fake GPU) and Prometheus with the project's rules, for all panels."""
    from tests.support.binaries import Processes

    tmp_path = tmp_path_factory.mktemp("dashboards")
    processes = Processes(tmp_path)
    try:
        server_url = start_demo_server(processes, models="chat,embed", rps=30)
        state = tmp_path / "nvml.txt"
        state.write_text(f"init 0\ngpu 0 35 {20 * GIB} {80 * GIB} 210000 0 0 GPU-dash {A100}\n")
        config = tmp_path / "pricing.yaml"
        config.write_text(textwrap.dedent(f"""
            allocation: {{gpu: {{type: a100-80gb}}, vcpus: 8, memory_gib: 64}}
            models:
              - {{name: chat, version: v1, server: {{preset: vllm, url: "{server_url}"}}, target_cost_per_1k_usd: 0.01}}
              - {{name: embed, version: v1, server: {{preset: vllm, url: "{server_url}"}}}}
            budgets: [{{name: demo, amount_usd: 0.001, period: day}}]
            collection: {{interval_seconds: 0.5, cost_window_seconds: 10}}
        """))
        env = {"LD_LIBRARY_PATH": str(fake_nvml_library), "FAKE_NVML_STATE": str(state)}
        exporter_url = start_exporter(processes, config, env)
        prometheus = start_prometheus(processes, tmp_path, exporter_url)
        yield prometheus
    finally:
        processes.stop_all()


def query(prometheus: str, expr: str) -> list:
    reply = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


# Panels over sources the live stack does not run (a gateway, a quality figure, a training job, a server with
# phase timing, a gateway's API spend, four weeks of history for the anomaly band): their queries must evaluate,
# and the metrics they read must be ones the exporter serves or the rules record.
WITHOUT_LIVE_SOURCE = {"Cost by tenant", "Cost against quality", "Training: cost per epoch and at completion",
                       "Cost per 1M tokens, by phase", "Prompt cache savings", "Hosted APIs beside self-hosted",
                       "Hourly cost against its usual band"}
_SERVED = re.compile(r"\bmlcost_[a-z0-9_]+")


@pytest.mark.parametrize(("dashboard", "title", "expr"), PANEL_QUERIES,
                         ids=[f"{d}:{t}:{i}" for i, (d, t, _) in enumerate(PANEL_QUERIES)])
def test_every_panel_query_returns_data_from_the_live_stack(live_prometheus, dashboard, title, expr):
    expr = substitute(expr)
    if title in WITHOUT_LIVE_SOURCE:
        query(live_prometheus, expr)  # evaluates
        served = "".join(p.read_text() for p in (REPO / "tests" / "fixtures" / "golden").glob("*.txt"))
        recorded = "".join(p.read_text() for p in (REPO / "prometheus" / "rules").glob("*.yml"))
        for name in _SERVED.findall(expr.split("{")[0] + " " + expr):
            assert f"# TYPE {name} " in served or f"record: {name}" in recorded or name in recorded, name
        return
    wait_until(lambda: query(live_prometheus, expr), timeout=60, what=f"data for {dashboard} / {title}: {expr}")


_RAW_WINDOW = re.compile(r"(mlcost_\w+_total)\{[^}]*\}\[([^\]]+)\]")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@pytest.mark.parametrize(("dashboard", "title", "expr"), PANEL_QUERIES)
def test_raw_counters_are_read_over_the_rate_interval_or_at_most_an_hour(dashboard, title, expr):
    """Zoomed-out views neither alias nor go blank ($__rate_interval), and no panel reads raw series over long
    windows at fleet scale: longer views read the recorded series."""
    for name, window in _RAW_WINDOW.findall(expr):
        if window == "$__rate_interval":
            continue
        seconds = int(window[:-1]) * _SECONDS[window[-1]]
        assert seconds == 3600, f"{title}: {name}[{window}] (use $__rate_interval, or 1h for the last hour)"


def test_a_panel_drawing_two_units_gives_the_second_its_own_axis():
    panels = {p["title"]: p for p in load(GRAFANA / "dashboards" / "ml-cost-model.json")["panels"]}
    both = panels["GPU utilization beside GPU cost"]
    assert both["fieldConfig"]["defaults"]["unit"] == "percentunit"
    (override,) = both["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byFrameRefID", "options": "B"}
    assert {p["id"]: p["value"] for p in override["properties"]} == {"unit": "currencyUSD",
                                                                     "custom.axisPlacement": "right"}


TOOLS = REPO / ".tools" / "node_modules"
GRAFANA_TYPES = TOOLS / "@grafana" / "schema" / "dist" / "types" / "raw" / "dashboard" / "x" / "types.gen"


def type_check(dashboards: dict[str, dict], workdir: Path) -> subprocess.CompletedProcess:
    """Grafana's own dashboard model (@grafana/schema's Dashboard type) checks each dashboard as an object
    literal: unknown fields, missing required ones and wrong types are errors."""
    tsc = TOOLS / ".bin" / "tsc"
    assert tsc.exists() and Path(f"{GRAFANA_TYPES}.d.ts").exists(), "scripts/setup.sh installs them into .tools/"
    files = []
    for name, body in dashboards.items():
        path = workdir / f"{name}.ts"
        path.write_text(f'import type {{ Dashboard }} from "{GRAFANA_TYPES}";\n'
                        f"export const dashboard: Dashboard = {json.dumps(body, indent=1)};\n")
        files.append(str(path))
    return subprocess.run([str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--moduleResolution", "node", *files],
                          capture_output=True, text=True, timeout=120)


def test_every_dashboard_is_a_valid_grafana_dashboard_by_grafanas_own_schema(tmp_path):
    dashboards = {path.stem.replace("-", "_"): load(path) for path in DASHBOARDS}
    result = type_check(dashboards, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    wrong_type = json.loads(json.dumps(dashboards["ml_cost_model"]))
    wrong_type["panels"][0]["gridPos"]["w"] = "twelve"
    unknown_field = json.loads(json.dumps(dashboards["ml_cost_model"]))
    unknown_field["refresh_every"] = "1m"
    result = type_check({"wrong_type": wrong_type, "unknown_field": unknown_field}, tmp_path)
    assert result.returncode != 0
    assert "wrong_type.ts" in result.stdout and "not assignable to type 'number'" in result.stdout
    assert "unknown_field.ts" in result.stdout and "refresh_every" in result.stdout
    assert "known properties" in result.stdout


# --- Grafana's dashboard linter, re-implemented -------------------------------------------------------------
# grafana/dashboard-linter (Go) is not published on PyPI or npm, so its rules that apply to these dashboards
# are re-implemented here, each named as the linter names it. PromQL validity is left to Prometheus's own
# parser (promtool); the rules that look inside a query use the small scanner below, which finds every
# vector selector with its matchers, its range and the function it is the direct argument of.

_TOKEN = re.compile(r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
                      |(?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
                      |(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|0x[0-9a-fA-F]+)
                      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
                      |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@]))""", re.VERBOSE)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "start", "end", "atan2"}
_AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
                 "count_values", "group", "limitk", "limit_ratio"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def tokens(expr: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(expr.rstrip()):
        match = _TOKEN.match(expr, position)
        assert match and match.end() > position, f"cannot scan {expr[position:]!r}"
        kind = match.lastgroup
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def selectors(expr: str) -> list[dict]:
    """Each vector selector: its metric name, its matchers (label, op, value), its range (None for an instant
    selector) and the function whose direct argument it is (None if any)."""
    toks, found, calls, i = tokens(expr), [], [], 0

    def skip_group(i: int) -> int:  # from an opening ( to after its closing )
        depth = 0
        while True:
            depth += {"(": 1, ")": -1}.get(toks[i][1], 0)
            i += 1
            if depth == 0:
                return i

    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in _LABEL_LISTS and following == "(":
            i = skip_group(i + 1)
        elif kind == "ident" and text in _AGGREGATIONS and following in ("by", "without"):
            i = skip_group(i + 2)  # the label list; the aggregation's own ( follows
            calls.append(text)
            i += 1
        elif kind == "ident" and following == "(" and text not in _KEYWORDS:
            calls.append(text)
            i += 2
        elif text == "(":
            calls.append(None)
            i += 1
        elif text == ")":
            calls.pop()
            i += 1
        elif (kind == "ident" and text not in _KEYWORDS) or text == "{":
            direct = toks[i - 1][1] in ("(", ",") if i else False
            selector = {"name": text if kind == "ident" else "", "matchers": [], "range": None}
            i += 1 if kind == "ident" else 0
            if i < len(toks) and toks[i][1] == "{":
                i += 1
                while toks[i][1] != "}":
                    if toks[i][1] == ",":
                        i += 1
                        continue
                    label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2][1]
                    selector["matchers"].append((label, op, value[1:-1]))
                    i += 3
                i += 1
            if i < len(toks) and toks[i][1] == "[":
                selector["range"] = toks[i + 1][1]
                while toks[i][1] != "]":
                    i += 1
                i += 1
            while i < len(toks) and toks[i][1] in ("offset", "@"):
                i += 2
            direct = direct and (i == len(toks) or toks[i][1] in (")", ","))
            selector["call"] = calls[-1] if direct and calls else None
            found.append(selector)
        elif kind == "ident" and text == "offset":
            i += 2
        else:
            i += 1
    return found


def test_the_selector_scanner_reads_promql_as_prometheus_does():
    expr = ('sum by (model, version) (rate(mlcost_usd_total{a="x,y}",b=~"$b"}[5m] offset 1h)) / on (model) '
            'group_left (team) max without (pod) (mlcost_model_info) > bool 0 and {__name__="up"}'
            ' * topk(3, increase(c_total[1h])) + time()')
    found = selectors(expr)
    assert [(s["name"], s["range"], s["call"]) for s in found] == [
        ("mlcost_usd_total", "5m", "rate"), ("mlcost_model_info", None, "max"), ("", None, None),
        ("c_total", "1h", "increase")]
    assert found[0]["matchers"] == [("a", "=", "x,y}"), ("b", "=~", "$b")]


GRAFANA_UNITS = {  # ids from Grafana's value formats (packages/grafana-data/src/valueFormats/categories.ts)
    "none", "string", "short", "percent", "percentunit", "locale", "sci", "currencyUSD", "currencyEUR",
    "currencyGBP", "bytes", "decbytes", "bits", "bps", "Bps", "watt", "kwatt", "watth", "kwatth", "joule",
    "massmg", "massg", "masskg", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurations", "hertz", "cps", "ops",
    "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "bool", "celsius", "dateTimeAsIso", "dateTimeFromNow"}
# Where a rule does not apply, and why (the linter's own .lint exclusions, with their reasons).
EXCLUSIONS = {
    ("template-job-rule", "mlcost-overview"): "reads recording rules, which aggregate jobs and instances away",
    ("template-job-rule", "mlcost-model"): "reads recording rules, which aggregate jobs and instances away",
    ("template-instance-rule", "mlcost-overview"): "reads recording rules, which aggregate jobs and instances away",
    ("template-instance-rule", "mlcost-model"): "reads recording rules, which aggregate jobs and instances away",
}


RATE_INTERVAL = "8869990787ms"  # the linter's stand-in for $__rate_interval: no query writes it by hand


def expand(expr: str) -> str:
    """Grafana's variables replaced as the linter does: outside double-quoted strings only."""
    parts = expr.split('"')
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("$__rate_interval", RATE_INTERVAL)
        assert "$" not in parts[i], f"a variable outside a string in {expr}"
    return '"'.join(parts)


def lint(board: dict) -> list[str]:
    """The dashboard-linter rules that apply, as (rule: what is wrong) lines; empty when all pass."""
    problems = []
    uid, variables = board["uid"], board["templating"]["list"]

    def report(rule: str, what: str) -> None:
        if (rule, uid) not in EXCLUSIONS:
            problems.append(f"{rule}: {what}")

    sources = [v for v in variables if v["type"] == "datasource"]
    if [(v["name"], v["label"], v["query"]) for v in sources] != [("datasource", "Data source", "prometheus")]:
        report("template-datasource-rule", f"wants one datasource variable named datasource, has {sources}")
    by_name = {v["name"]: v for v in variables}
    for name in ("job", "instance"):
        v = by_name.get(name)
        if v is None:
            report(f"template-{name}-rule", f"no {name} variable")
        elif (v["type"], v["datasource"]["uid"], v["label"], v["multi"], v["allValue"]) != (
                "query", "${datasource}", name.title(), True, ".+"):
            report(f"template-{name}-rule", f"{name} variable {v}")
    for v in variables:
        if v["type"] != "query":
            continue
        query = v["query"]["query"]
        call = re.fullmatch(r"([a-z_]+)\((.+)\)", query)
        if not call or call.group(1) not in ("label_names", "label_values", "metrics", "query_result"):
            report("template-label-promql-rule", f"{v['name']}: {query}")
        else:
            PROMQL_TO_PARSE.append(expand(call.group(2).rsplit(",", 1)[0] if call.group(1) == "label_values"
                                          else call.group(2)))
        if v["refresh"] != 2:
            report("template-on-time-change-reload-rule", f"{v['name']} refreshes {v['refresh']}")
    if board["editable"]:
        report("uneditable-dashboard", "editable")
    needs_target = {"job", "instance"} <= set(by_name)
    for panel in board["panels"]:
        title = panel["title"]
        if panel["datasource"].get("uid") not in ("$datasource", "${datasource}"):
            report("panel-datasource-rule", f"{title}: {panel['datasource']}")
        if not title or not panel.get("description"):
            report("panel-title-description-rule", f"{title!r}")
        units = [p["value"] for o in panel["fieldConfig"]["overrides"] for p in o["properties"] if p["id"] == "unit"]
        unit = (units or [panel["fieldConfig"]["defaults"].get("unit", "")])[-1]
        if unit not in GRAFANA_UNITS:
            report("panel-units-rule", f"{title}: {unit!r}")
        if not panel.get("targets"):
            report("panel-no-targets-rule", title)
        for target in panel.get("targets", []):
            expr = target["expr"]
            PROMQL_TO_PARSE.append(expand(expr))
            for s in selectors(expand(expr)):
                matchers = set(s["matchers"])
                if s["call"] in ("rate", "irate") and s["range"] not in (None, RATE_INTERVAL):
                    report("target-rate-interval-rule", f"{title}: {expr}")
                if s["name"].endswith("_total") and not (s["range"] and s["call"] in ("rate", "irate", "increase")):
                    report("target-counter-agg-rule", f"{title}: {s['name']} in {expr}")
                if ("cluster", "=~", "$cluster") not in matchers:
                    report("target-cluster-rule", f"{title}: {s['name'] or '{...}'} in {expr}")
                for name in ("job", "instance"):
                    if needs_target and (name, "=~", f"${name}") not in matchers:
                        report(f"target-{name}-rule", f"{title}: {s['name']} in {expr}")
    return problems


PROMQL_TO_PARSE: list[str] = []


def promtool_parses(exprs: list[str], workdir: Path) -> subprocess.CompletedProcess:
    """target-promql-rule: Prometheus's own parser, through promtool checking them as recording rules."""
    rules = {"groups": [{"name": "lint", "rules": [{"record": f"lint:expr_{i}", "expr": e}
                                                    for i, e in enumerate(exprs)]}]}
    path = workdir / "lint.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_every_dashboard_passes_grafanas_dashboard_linter_rules(tmp_path):
    PROMQL_TO_PARSE.clear()
    for path in DASHBOARDS:
        assert lint(load(path)) == [], path.name
    result = promtool_parses(PROMQL_TO_PARSE, tmp_path)
    assert result.returncode == 0 and f"{len(PROMQL_TO_PARSE)} rules found" in result.stdout, result.stdout + \
        result.stderr
    for reason in EXCLUSIONS.values():
        assert len(reason) > 20


def test_the_linter_catches_what_it_is_for(tmp_path):
    board = load(GRAFANA / "dashboards" / "ml-cost-exporter-health.json")
    board["panels"][0]["datasource"] = {"type": "prometheus", "uid": "mlcost-prometheus"}
    board["panels"][1]["description"] = ""
    board["panels"][2]["fieldConfig"]["defaults"]["unit"] = "suffix:x"
    board["panels"][3]["targets"][0]["expr"] = 'sum(mlcost_exporter_source_up{cluster=~"$cluster"})'
    board["panels"][5]["targets"][0]["expr"] = board["panels"][5]["targets"][0]["expr"].replace(
        "$__rate_interval", "5m")
    board["panels"][5]["targets"][1]["expr"] = 'mlcost_exporter_invalid_samples_total{cluster=~"$cluster",' \
                                               'job=~"$job",instance=~"$instance"}'
    board["templating"]["list"] = [v for v in board["templating"]["list"] if v["name"] != "datasource"]
    board["templating"]["list"][1]["refresh"] = 1
    rules = {line.split(":")[0] for line in lint(board)}
    assert rules == {"panel-datasource-rule", "panel-title-description-rule", "panel-units-rule",
                     "target-job-rule", "target-instance-rule", "target-rate-interval-rule", "target-counter-agg-rule",
                     "template-datasource-rule", "template-on-time-change-reload-rule"}
    assert [line for line in lint(board) if "target-cluster-rule" in line] == []
    board["panels"][4]["targets"][0]["expr"] = 'mlcost_exporter_config_last_reload_successful{job=~"$job"}'
    assert any(line.startswith("target-cluster-rule: Config reloads") for line in lint(board))
    assert promtool_parses(["sum(up{job=~\"a\"}[5m]", "rate(up[5m])"], tmp_path).returncode != 0
