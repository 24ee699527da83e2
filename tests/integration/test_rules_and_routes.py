"""The rule and Alertmanager files checked and unit-tested with the real promtool and amtool."""

import shutil
import subprocess

import pytest

from tests.conftest import REPO

PROMETHEUS = REPO / "prometheus"
ALERTMANAGER = REPO / "alertmanager"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required (Debian packages prometheus and prometheus-alertmanager)"
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_prometheus_config_and_rules_pass_promtool_check():
    config = run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run(tool("promtool"), "check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))
    assert rules.returncode == 0, rules.stdout + rules.stderr


@pytest.mark.parametrize("test_file", sorted(p.name for p in (PROMETHEUS / "tests").glob("*.test.yml")))
def test_promtool_rule_unit_tests(test_file):
    result = run(tool("promtool"), "test", "rules", str(PROMETHEUS / "tests" / test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_test_and_the_contract_fields():
    import yaml

    alerts = {}
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.setdefault(rule["alert"], []).append(rule)
    assert set(alerts) == {
        "MLCostBudgetBurnFast", "MLCostBudgetBurnSlow", "MLCostBudgetThresholdReached", "MLCostBudgetForecastExceeded",
        "MLCostPer1kAboveTarget", "MLCostGPUIdleHigh", "MLCostExporterDown", "MLCostCollectorFailing",
        "MLCostSourceDown", "MLCostGPUNotVisible", "MLCostTrainingForecastOverBudget", "MLCostAnomaly", "Watchdog"}
    tested = "".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.test.yml"))
    for name, rules in alerts.items():
        assert f"alertname: {name}\n        exp_alerts:\n          - exp_labels" in tested, f"{name} has no firing test"
        assert f"alertname: {name}, exp_alerts: []" in tested or name == "Watchdog", f"{name} has no quiet test"
        for rule in rules:
            assert "for" in rule, name
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
            for annotation in ("summary", "description", "runbook_url", "dashboard_url"):
                assert rule["annotations"].get(annotation), f"{name} lacks {annotation}"
            anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
            assert f"## {name}\n" in (REPO / "docs" / "runbooks.md").read_text() and anchor == name.lower()


def test_alertmanager_config_passes_amtool_check():
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["alertname=MLCostBudgetBurnFast", "severity=critical", "budget=b"], "pager"),
    (["alertname=MLCostBudgetThresholdReached", "severity=critical", "budget=b", "threshold=1"], "pager"),
    (["alertname=MLCostBudgetBurnSlow", "severity=warning", "budget=b"], "chat"),
    (["alertname=MLCostPer1kAboveTarget", "severity=warning", "model=m"], "chat"),
    (["alertname=MLCostGPUIdleHigh", "severity=info", "model=m"], "low-noise"),
    (["alertname=Watchdog", "severity=info"], "watchdog"),
    (["alertname=SomethingElse"], "chat"),
])
def test_alertmanager_routes_each_severity_to_its_receiver(labels, receiver):
    result = run(tool("amtool"), "config", "routes", "test", "--config.file", str(ALERTMANAGER / "alertmanager.yml"),
                 *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver
