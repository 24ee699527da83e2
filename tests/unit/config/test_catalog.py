"""The embedded catalog is internally consistent, carries provenance, and overlays are validated as strictly."""

import itertools
import textwrap

import pytest

from ml_cost_exporter.config.catalog import (
    CLOUD_PROVIDERS,
    Catalog,
    GpuType,
    Instance,
    apply_overlay,
    embedded_catalog,
)
from ml_cost_exporter.config.errors import ConfigError

CATALOG = embedded_catalog()


def dominates(newer: GpuType, older: GpuType) -> bool:
    """`newer` is at least as new, as large and as power-hungry as `older`, and strictly more in one."""
    at_least = (newer.released >= older.released and newer.memory_gib >= older.memory_gib
                and newer.tdp_watts >= older.tdp_watts)
    strictly = (newer.released > older.released or newer.memory_gib > older.memory_gib
                or newer.tdp_watts > older.tdp_watts)
    return at_least and strictly


def inversions(catalog: Catalog) -> list[tuple[str, Instance, Instance]]:
    """Pairs where a newer, larger GPU costs less per GPU than an older, smaller one.

    Compared on each provider's reference instances (what a GPU is priced at) and
    between instances with the same GPU count (like-for-like machines).
    """
    found = []
    for provider in catalog.providers.values():
        references = [provider.instances[offer.instance] for offer in provider.gpu_offers.values()]
        gpu_instances = [i for i in provider.instances.values() if i.gpu_type]
        same_count = [(a, b) for a, b in itertools.permutations(gpu_instances, 2) if a.gpus == b.gpus]
        for cheap, dear in [*itertools.permutations(references, 2), *same_count]:
            if (dominates(catalog.gpu_types[cheap.gpu_type], catalog.gpu_types[dear.gpu_type])
                    and cheap.hourly_usd / cheap.gpus < dear.hourly_usd / dear.gpus):
                found.append((provider.name, cheap, dear))
    return found


def test_no_newer_larger_gpu_is_priced_below_an_older_smaller_one_without_a_note_saying_why():
    unexplained = [f"{p}: {cheap.name} below {dear.name}" for p, cheap, dear in inversions(CATALOG) if not cheap.note]
    assert unexplained == []


def test_every_note_explains_an_inversion_that_exists():
    explained = {(p, cheap.name) for p, cheap, _ in inversions(CATALOG)}
    stale = [(p.name, i.name) for p in CATALOG.providers.values() for i in p.instances.values()
             if i.note and (p.name, i.name) not in explained]
    assert stale == []


def test_the_inversion_check_catches_an_h200_priced_below_an_h100():
    text = textwrap.dedent("""
        overlay_version: 1
        providers:
          aws:
            instances:
              p5en.48xlarge: {hourly_usd: 50.0, gpu_type: h200, gpus: 8, vcpus: 192, memory_gib: 2048,
                              source: test, as_of: "2025-07"}
    """)
    broken = apply_overlay(CATALOG, text, "o.yaml")
    assert [(p, c.name, d.name) for p, c, d in inversions(broken) if not c.note] == [
        ("aws", "p5en.48xlarge", "p5.48xlarge"), ("aws", "p5en.48xlarge", "p5.48xlarge")]


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_purchase_options_are_ordered_spot_below_commitments_below_on_demand(provider):
    options = CATALOG.providers[provider].purchase_options
    assert options["on_demand"] == 1.0
    assert 0 < options["spot"] < options["commit_3y"] < options["commit_1y"] < 1.0


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_cpu_instances_match_the_unit_rates_within_ten_percent(provider):
    # The rates split general-purpose prices; compute- and memory-optimized families sit a few percent off.
    p = CATALOG.providers[provider]
    for instance in (i for i in p.instances.values() if not i.gpu_type):
        unit_priced = instance.vcpus * p.vcpu_hourly_usd + instance.memory_gib * p.memory_gib_hourly_usd
        assert instance.hourly_usd == pytest.approx(unit_priced, rel=0.10), instance.name


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_gpu_instances_cost_more_than_their_host_at_unit_rates(provider):
    p = CATALOG.providers[provider]
    for instance in (i for i in p.instances.values() if i.gpu_type):
        host = instance.vcpus * p.vcpu_hourly_usd + instance.memory_gib * p.memory_gib_hourly_usd
        assert instance.hourly_usd > host, instance.name


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_one_gpu_type_costs_about_the_same_per_gpu_on_every_machine_of_a_provider(provider):
    by_type: dict[str, list[float]] = {}
    for instance in CATALOG.providers[provider].instances.values():
        if instance.gpu_type:
            by_type.setdefault(instance.gpu_type, []).append(instance.hourly_usd / instance.gpus)
    for gpu_type, prices in by_type.items():
        assert max(prices) / min(prices) < 2.0, gpu_type  # hosts differ; the GPU dominates


def test_every_instance_has_a_positive_price_a_source_and_a_month():
    for provider in CATALOG.providers.values():
        for instance in provider.instances.values():
            assert instance.hourly_usd > 0 and instance.vcpus > 0 and instance.memory_gib > 0
            assert instance.source.startswith("https://"), instance.name
            assert len(instance.as_of) == 7 and instance.as_of[4] == "-", instance.name
        for gpu_type, offer in provider.gpu_offers.items():
            reference = provider.instances[offer.instance]
            assert (offer.source, offer.as_of) == (reference.source, reference.as_of), gpu_type


def test_the_june_2025_aws_cut_applies_to_p4_and_p5_alike():
    aws = CATALOG.providers["aws"].instances
    assert aws["p4d.24xlarge"].hourly_usd == pytest.approx(32.7726 * 0.67, rel=1e-3)
    assert aws["p4de.24xlarge"].hourly_usd == pytest.approx(40.9657 * 0.67, rel=1e-3)
    assert (aws["p5.48xlarge"].hourly_usd, aws["p5en.48xlarge"].hourly_usd) == (55.04, 63.296)
    assert all("June 2025" in aws[n].source for n in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"))


OVERLAY = textwrap.dedent("""
    overlay_version: 1
    providers:
      aws:
        instances:
          g6.xlarge: {hourly_usd: 0.7, gpu_type: l4, gpus: 1, vcpus: 4, memory_gib: 16,
                      source: "AWS Price List AmazonEC2 20250801000000 us-east-1", as_of: "2025-08"}
          g6.2xlarge: {hourly_usd: 0.9776, gpu_type: l4, gpus: 1, vcpus: 8, memory_gib: 32,
                       source: "AWS Price List AmazonEC2 20250801000000 us-east-1", as_of: "2025-08"}
""")


def test_an_overlay_replaces_an_instance_in_place_and_adds_new_ones():
    catalog = apply_overlay(CATALOG, OVERLAY, "overlay.yaml")
    aws = catalog.providers["aws"]
    assert aws.instances["g6.xlarge"].hourly_usd == 0.7 and aws.instances["g6.xlarge"].as_of == "2025-08"
    assert "g6.2xlarge" in aws.instances
    assert aws.gpu_offers["l4"].instance == "g6.xlarge" and aws.gpu_offers["l4"].hourly_usd == 0.7
    assert aws.gpu_offers["l4"].as_of == "2025-08"
    assert catalog.providers["gcp"] is CATALOG.providers["gcp"]
    assert CATALOG.providers["aws"].instances["g6.xlarge"].hourly_usd == 0.8048  # the base is untouched


@pytest.mark.parametrize(("text", "message"), [
    ("providers: {}\n", "o.yaml:1: overlay_version: is required"),
    ("overlay_version: 2\nproviders: {}\n", "o.yaml:1: overlay_version: unsupported overlay version 2"),
    ("overlay_version: 1\nproviders:\n  oracle: {instances: {}}\n", "o.yaml:3: providers.oracle: unknown provider"),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: 1, vcpus: 1, memory_gib: 1,"
     " as_of: '2025-08'}\n", "o.yaml:5: providers.aws.instances.x.source: is required"),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: 1, vcpus: 1, memory_gib: 1,"
     " source: s, as_of: 'Aug 2025'}\n", 'o.yaml:5: providers.aws.instances.x.as_of: "Aug 2025" is not a month'),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: -1, vcpus: 1, memory_gib: 1,"
     " source: s, as_of: '2025-08'}\n", "o.yaml:5: providers.aws.instances.x.hourly_usd: must be greater than 0"),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: .nan, vcpus: 1, memory_gib: 1,"
     " source: s, as_of: '2025-08'}\n", "o.yaml:5: providers.aws.instances.x.hourly_usd: expected a finite number"),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: 1, vcpus: 1, memory_gib: 1,"
     " gpu_type: b300, source: s, as_of: '2025-08'}\n", 'o.yaml:5: providers.aws.instances.x.gpu_type: unknown GPU'),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: 1, vcpus: 1, memory_gib: 1,"
     " gpus: 2, source: s, as_of: '2025-08'}\n", "o.yaml:5: providers.aws.instances.x: an instance with gpus needs"),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: {hourly_usd: 1, vcpus: 1, memory_gib: 1,"
     " source: s, as_of: '2025-08', hourly: 2}\n", "o.yaml:5: providers.aws.instances.x.hourly: unknown key"),
    ("overlay_version: 1\nproviders:\n  aws:\n    instances:\n      x: 3\n",
     "o.yaml:5: providers.aws.instances.x: expected a mapping, got the number 3"),
    ("overlay_version: 1\nproviders:\n  aws: {}\n", "o.yaml:3: providers.aws.instances: is required"),
    ("overlay_version: 1\nproviders: {aws: {instances: {}}}\nextra: 1\n", "o.yaml:3: extra: unknown key"),
    ("overlay_version: 1\nproviders: [\n", "o.yaml:3: invalid YAML"),
])
def test_a_bad_overlay_is_one_error_naming_file_line_and_key_path(text, message):
    with pytest.raises(ConfigError) as raised:
        apply_overlay(CATALOG, text, "o.yaml")
    assert str(raised.value).startswith(message), str(raised.value)
