import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.allocation import resolve_allocation
from ml_cost_exporter.sources.discovery import cgroup_cpu_limit, cgroup_memory_limit, discover_host, seen_gpus
from ml_cost_exporter.sources.nvml import GpuReading, GpuSample
from tests.conftest import A100, GIB


def test_cgroup_v2_limits(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    (tmp_path / "memory.max").write_text(str(8 * GIB))
    assert cgroup_cpu_limit(tmp_path) == 2.5 and cgroup_memory_limit(tmp_path) == 8 * GIB
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_cpu_limit(tmp_path) is None and cgroup_memory_limit(tmp_path) is None


def test_cgroup_v1_limits(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    assert cgroup_cpu_limit(tmp_path) == 4.0 and cgroup_memory_limit(tmp_path) is None


def test_zero_config_prices_the_gpus_nvml_sees_and_the_cgroup_limits(tmp_path):
    (tmp_path / "cpu.max").write_text("400000 100000")
    (tmp_path / "memory.max").write_text(str(32 * GIB))
    gpus = GpuSample(True, (GpuReading("0", "GPU-a", A100, 0.5, 0, 80 * GIB, 200.0),
                            GpuReading("1", "GPU-b", A100, 0.5, 0, 80 * GIB, 200.0)))
    resolved = resolve_allocation(parse_config("", "p.yaml"), seen_gpus(gpus), discover_host(tmp_path))
    assert (resolved.gpu_type.id, resolved.gpus, resolved.vcpus, resolved.memory_gib) == ("a100-80gb", 2, 4, 32)


def test_configured_gpu_without_nvml_still_accrues_cost(tmp_path):
    config = parse_config("allocation: {gpu: {type: l4}, vcpus: 4, memory_gib: 16}", "p.yaml")
    resolved = resolve_allocation(config, seen_gpus(GpuSample(False, (), "nvmlInit failed")), discover_host(tmp_path))
    assert (resolved.gpu_type.id, resolved.gpus) == ("l4", 1.0)


def test_an_unknown_gpu_name_is_priced_at_zero_with_a_warning(tmp_path, caplog):
    gpus = GpuSample(True, (GpuReading("0", "GPU-x", "NVIDIA Quantum 9000", 0.1, 0, GIB, 10.0),))
    config = parse_config("allocation: {vcpus: 2, memory_gib: 4}", "p.yaml")
    resolved = resolve_allocation(config, seen_gpus(gpus), discover_host(tmp_path))
    assert resolved.gpus == 0 and resolved.gpu_type is None
    assert "not in the price catalog" in caplog.text


def test_instance_share_gives_the_share_of_the_instance(tmp_path):
    config = parse_config("allocation: {instance: {type: p5.48xlarge, share: 0.25}}", "p.yaml")
    resolved = resolve_allocation(config, seen_gpus(None), discover_host(tmp_path))
    assert (resolved.gpu_type.id, resolved.gpus, resolved.vcpus, resolved.memory_gib) == ("h100", 2, 48, 512)


@pytest.mark.parametrize("profile", ["1g.10gb", "3g.40gb", "7g.80gb"])
def test_mig_profile_sets_the_fraction_priced(tmp_path, profile):
    config = parse_config(f"allocation: {{gpu: {{type: a100-80gb, mig_profile: {profile}}}}}", "p.yaml")
    resolved = resolve_allocation(config, seen_gpus(None), discover_host(tmp_path))
    assert resolved.gpus == pytest.approx(int(profile[0]) / 7)


def test_pod_labels_come_from_the_downward_api_file_keeping_valid_label_names(tmp_path):
    from ml_cost_exporter.config.pod import read_pod_labels

    path = tmp_path / "labels"
    path.write_text('team="risk"\napp.kubernetes.io/name="vllm"\nenv="prod \\"eu\\""\nbroken\nproject=unquoted\n')
    assert read_pod_labels(path) == {"team": "risk", "env": 'prod "eu"'}


def test_the_advice_for_a_missing_gpu_fits_where_the_exporter_runs(tmp_path):
    from ml_cost_exporter.sources.nvml import NVML_ADVICE, where_running

    assert where_running({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, tmp_path) == "kubernetes"
    assert where_running({}, tmp_path) == "host"
    (tmp_path / ".dockerenv").write_text("")
    assert where_running({}, tmp_path) == "container"
    assert "Bottlerocket" in NVML_ADVICE["kubernetes"] and "Bottlerocket" not in NVML_ADVICE["host"]
    assert "--gpus all" in NVML_ADVICE["container"]
