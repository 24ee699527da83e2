"""docker-compose.yml and the exporter's Dockerfile, checked statically (no Docker engine is needed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from tests.conftest import FIXTURES, REPO
from tests.support.binaries import tool

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_file_validates_against_the_compose_specification_schema():
    schema = json.loads((FIXTURES / "compose" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)  # the schema declares draft 2019-09
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert not errors, errors
    broken = dict(COMPOSE, services={"x": {"image": "a", "restart": ["not", "a", "string"]}})
    assert list(validator.iter_errors(broken)), "the schema must reject a malformed file"


def dockerfile_of(service: dict) -> Path:
    build = service["build"]
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build["context"] / build.get("dockerfile", "Dockerfile")


def test_every_bind_mount_and_build_context_exists():
    for name, service in SERVICES.items():
        if "build" in service:
            assert dockerfile_of(service).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name}: named volume {source} is not declared"


def test_every_image_is_pinned_or_built_here():
    built = {s["image"] for s in SERVICES.values() if "build" in s}
    for name, service in SERVICES.items():
        image = service["image"]
        assert image in built or re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned"


def service_ports(name: str) -> set[int]:
    service = SERVICES[name]
    ports = {int(str(p).split(":")[-1]) for p in service.get("ports", [])}
    ports |= {int(p) for p in service.get("expose", [])}
    return ports


def test_scrape_targets_alertmanagers_and_datasources_name_services_and_ports_of_the_file():
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    targets += [t for am in prometheus["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]
    datasources = yaml.safe_load((REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    targets += [ds["url"].split("//")[1] for ds in datasources["datasources"]]
    assert len(targets) >= 4
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in SERVICES, f"{target}: no service {host}"
        assert int(port) in service_ports(host), f"{target}: {host} does not expose {port}"


def test_alertmanager_config_service_writes_a_config_amtool_accepts(tmp_path):
    command = SERVICES["alertmanager-config"]["command"]
    sink = command[command.index("--sink") + 1]
    result = subprocess.run([sys.executable, "-m", "harness.stackconfig", "--repo", str(REPO),
                             "--out", str(tmp_path), "--sink", sink],
                            capture_output=True, text=True, check=True, cwd=REPO)
    generated = tmp_path / "alertmanager.yml"
    assert result.stdout.strip() == str(generated)
    config = yaml.safe_load(generated.read_text())
    pager = next(r for r in config["receivers"] if r["name"] == "pager")
    assert pager["pagerduty_configs"][0]["url"] == f"{sink}/pagerduty"
    check = subprocess.run([tool("amtool"), "check-config", str(generated)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_dockerfile_builds_small_non_root_read_only_friendly_images():
    text = (REPO / "exporter" / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) == 2, "a build stage and a final stage"
    bases = re.findall(r"(?m)^FROM (\S+)", text)
    assert len(set(bases)) == 1 and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases[0]), f"{bases} not pinned"
    final = stages[-1]
    assert re.search(r"(?m)^USER 65532:65532$", final)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "PYTHONDONTWRITEBYTECODE=1" in final
    assert not re.search(r"apt-get|apk add|gcc|build-essential", final), "no build tools in the final image"
    assert re.search(r'(?m)^ENTRYPOINT \["ml-cost-exporter"\]$', final)
    assert "EXPOSE 9945" in final


def test_the_demo_has_its_own_image_and_the_exporter_package_carries_none_of_it():
    built = {name: dockerfile_of(service) for name, service in SERVICES.items() if "build" in service}
    assert built == {"exporter": REPO / "exporter" / "Dockerfile", "demo-server": REPO / "demo" / "Dockerfile"}
    demo = (REPO / "demo" / "Dockerfile").read_text()
    assert re.search(r"(?m)^USER 65532:65532$", demo)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", re.findall(r"(?m)^FROM (\S+)", demo)[0])
    assert re.findall(r"(?m)^COPY (\S+) ", demo) == ["demo", "harness"]  # from the repository root, the context
    assert not (REPO / "exporter" / "ml_cost_exporter" / "demo").exists()
    assert "demo" not in (REPO / "exporter" / "pyproject.toml").read_text().split("[project.scripts]")[1]
    for name in ("demo-server", "webhook-sink", "alertmanager-config"):
        assert SERVICES[name]["image"] == "ml-cost-demo:local", name
