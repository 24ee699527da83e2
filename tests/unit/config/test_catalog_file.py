"""pricing.catalog_file: an overlay loaded on top of the embedded catalog, strict, and safe to get wrong."""

import textwrap

import pytest

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import load_config, parse_config
from ml_cost_exporter.cost.pricing import ResolvedAllocation, price_allocation
from ml_cost_exporter.runtime import Clocks, Runtime

OVERLAY = textwrap.dedent("""
    overlay_version: 1
    providers:
      aws:
        instances:
          p5.48xlarge: {hourly_usd: 48.0, gpu_type: h100, gpus: 8, vcpus: 192, memory_gib: 2048,
                        source: "AWS Price List AmazonEC2 20251001000000 us-east-1", as_of: "2025-10"}
""")
CONFIG = ("pricing:\n  catalog_file: prices/overlay.yaml\n"
          "allocation: {gpu: {type: h100, count: 1}, vcpus: 1, memory_gib: 1}\n")


def write(tmp_path, config: str = CONFIG, overlay: str = OVERLAY):
    (tmp_path / "prices").mkdir(exist_ok=True)
    (tmp_path / "prices" / "overlay.yaml").write_text(overlay)
    path = tmp_path / "pricing.yaml"
    path.write_text(config)
    return path


def gpu_rate(config) -> float:
    h100 = config.catalog.gpu_types["h100"]
    return price_allocation(config, ResolvedAllocation(h100, 1.0, 1e-9, 1e-9)).gpu_usd_per_hour


def test_the_overlay_relative_to_the_config_file_reprices_the_gpu(tmp_path):
    config = load_config(write(tmp_path))
    assert config.pricing.catalog_file == "prices/overlay.yaml"
    assert gpu_rate(config) == pytest.approx(48.0 / 8, rel=1e-6)
    offer = config.catalog.providers["aws"].gpu_offers["h100"]
    assert (offer.as_of, offer.source) == ("2025-10", "AWS Price List AmazonEC2 20251001000000 us-east-1")
    assert gpu_rate(parse_config(CONFIG.replace("  catalog_file: prices/overlay.yaml\n", ""), "p.yaml")) == \
        pytest.approx(55.04 / 8, rel=1e-6)


def test_an_overlay_can_add_an_instance_type_the_config_then_accepts(tmp_path):
    overlay = OVERLAY.replace("p5.48xlarge:", "p5.4xlarge:").replace("gpus: 8, vcpus: 192, memory_gib: 2048",
                                                                      "gpus: 1, vcpus: 16, memory_gib: 256")
    config = load_config(write(tmp_path, CONFIG.replace(
        "allocation: {gpu: {type: h100, count: 1}, vcpus: 1, memory_gib: 1}",
        "allocation: {instance: {type: p5.4xlarge}}"), overlay))
    assert config.catalog.providers["aws"].instances["p5.4xlarge"].hourly_usd == 48.0


@pytest.mark.parametrize(("overlay", "message"), [
    (None, "pricing.yaml:2: pricing.catalog_file: cannot read catalog overlay"),
    ("overlay_version: 1\nproviders: {aws: {instances: {p5.48xlarge: {hourly_usd: 0}}}}\n",
     "overlay.yaml:2: providers.aws.instances.p5.48xlarge.hourly_usd: must be greater than 0"),
    ("overlay_version: 1\nproviders: {aws: {instances: {}}}\n" + "# pad\n" * 2_000_000,
     "pricing.yaml:2: pricing.catalog_file: catalog overlay"),
    (b"\xff\xfe\x00", "pricing.yaml:2: pricing.catalog_file: catalog overlay"),
])
def test_a_missing_invalid_huge_or_binary_overlay_is_one_config_error(tmp_path, overlay, message):
    path = write(tmp_path)
    target = tmp_path / "prices" / "overlay.yaml"
    if overlay is None:
        target.unlink()
    elif isinstance(overlay, bytes):
        target.write_bytes(overlay)
    else:
        target.write_text(overlay)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_an_unknown_overrides_basis_is_rejected_with_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r'p\.yaml:2: pricing\.overrides\.basis: unknown value "list".*on_demand'):
        parse_config("pricing:\n  overrides: {basis: list}\n", "p.yaml")


def test_a_broken_overlay_on_reload_keeps_the_previous_catalog_and_a_fixed_one_is_picked_up(tmp_path, clock):
    path = write(tmp_path)
    runtime = Runtime(str(path), frozenset(), Clocks(clock.wall, clock.monotonic), environ={},
                      cgroup_root=tmp_path)
    before = runtime.rates.gpu_usd_per_hour
    overlay = tmp_path / "prices" / "overlay.yaml"
    overlay.write_text(OVERLAY.replace("hourly_usd: 48.0", "hourly_usd: -48.0"))
    runtime.check_config_changed()  # the overlay is part of what the watch fingerprints
    assert runtime._reload_requested
    assert runtime.reload() is False and runtime.state().reload.successful is False
    assert runtime.rates.gpu_usd_per_hour == before
    assert runtime.config.catalog.providers["aws"].instances["p5.48xlarge"].hourly_usd == 48.0
    overlay.write_text(OVERLAY.replace("hourly_usd: 48.0", "hourly_usd: 40.0"))
    assert runtime.reload() is True
    assert runtime.config.catalog.providers["aws"].instances["p5.48xlarge"].hourly_usd == 40.0
