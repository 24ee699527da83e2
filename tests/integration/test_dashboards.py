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

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
VARIABLES = {"namespace": ".*", "model": "chat", "budget": "demo", "__rate_interval": "1m"}  # Grafana fills the last


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def datasource_uid() -> str:
    provisioning = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    return datasource["uid"]


def test_dashboards_are_what_the_generator_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], f"{path.name} drifted: run python grafana/build_dashboards.py"


def test_dashboards_have_the_structure_provisioning_loads():
    uid = datasource_uid()
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
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid
        for panel in board["panels"]:
            assert panel["description"], f"{path.name}: {panel['title']} has no description"
            assert panel["datasource"]["uid"] == uid
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["targets"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid and target["expr"] and target["refId"]


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
# phase timing): their queries must evaluate, and the metrics they read must be ones the exporter serves.
WITHOUT_LIVE_SOURCE = {"Cost by tenant", "Cost against quality", "Training: cost per epoch and at completion",
                       "Cost per 1M tokens, by phase", "Prompt cache savings"}
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
