"""The embedded price catalog: GPU types, cloud instance prices, on-prem defaults.

The catalog is data (catalog.yaml) validated strictly at load, so a typo in a
price table fails loudly with its line instead of pricing a GPU at zero. A
catalog overlay (pricing.catalog_file, e.g. written from a provider's price
file) replaces or adds instances and is validated exactly as strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from types import MappingProxyType

from ml_cost_exporter.config.bill import (
    EgressPrices,
    HostedModel,
    StorageClass,
    parse_egress,
    parse_hosted_models,
    parse_storage_classes,
)
from ml_cost_exporter.config.bill import as_of as _as_of
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Located, Section, load_located

PURCHASE_OPTIONS = ("on_demand", "spot", "commit_1y", "commit_3y")
CLOUD_PROVIDERS = ("aws", "gcp", "azure")
OVERLAY_VERSION = 1


@dataclass(frozen=True)
class GpuType:
    id: str
    display_name: str
    nvml_names: tuple[str, ...]
    memory_gib: float
    tdp_watts: float
    mig_slices: int
    purchase_usd: float
    released: int  # year of launch: the consistency test compares generations by it


@dataclass(frozen=True)
class Instance:
    """One instance type's list price, with where it was read and the month it reflects."""

    name: str
    hourly_usd: float
    vcpus: float
    memory_gib: float
    gpu_type: str | None
    gpus: int
    source: str = ""
    as_of: str = ""  # YYYY-MM
    note: str | None = None  # why a price that looks inconsistent is right


@dataclass(frozen=True)
class GpuOffer:
    """One GPU's share of its reference instance: the price and the host that comes with it."""

    instance: str
    hourly_usd: float
    vcpus: float
    memory_gib: float
    source: str = ""
    as_of: str = ""


@dataclass(frozen=True)
class Provider:
    name: str
    source: str
    as_of: str
    vcpu_hourly_usd: float
    memory_gib_hourly_usd: float
    purchase_options: Mapping[str, float]
    instances: Mapping[str, Instance]
    gpu_offers: Mapping[str, GpuOffer]  # each GPU type's share of its reference instance
    storage_classes: Mapping[str, StorageClass] = field(default_factory=lambda: MappingProxyType({}))
    egress: EgressPrices | None = None


@dataclass(frozen=True)
class OnPremCosts:
    """What owned hardware costs: its amortization, the price and overhead of power, host parts."""

    amortization_years: float
    power_usd_per_kwh: float
    pue: float
    vcpu_purchase_usd: float
    memory_gib_purchase_usd: float


@dataclass(frozen=True)
class OnPremDefaults(OnPremCosts):
    source: str
    as_of: str


@dataclass(frozen=True)
class Catalog:
    gpu_types: Mapping[str, GpuType]
    providers: Mapping[str, Provider]
    onprem: OnPremDefaults
    hosted_models: Mapping[str, HostedModel] = field(default_factory=lambda: MappingProxyType({}))  # for compare

    def gpu_type_for_nvml_name(self, nvml_name: str) -> GpuType | None:
        """The catalog GPU type whose NVML name pattern occurs in `nvml_name`, longest pattern first."""
        best: tuple[int, GpuType] | None = None
        for gpu in self.gpu_types.values():
            for pattern in gpu.nvml_names:
                if pattern in nvml_name and (best is None or len(pattern) > best[0]):
                    best = (len(pattern), gpu)
        return best[1] if best else None


def _gpu_type(gpu_id: str, section: Section) -> GpuType:
    names = section.raw("nvml_names")
    nvml_names = tuple(str(n.value) for n in section.items("nvml_names"))
    if not nvml_names:
        raise (names.error("must list at least one name") if names else section.missing("nvml_names"))
    gpu = GpuType(
        id=gpu_id,
        display_name=section.string("display_name", required=True),
        nvml_names=nvml_names,
        memory_gib=section.number("memory_gib", required=True, minimum=0, exclusive_minimum=True),
        tdp_watts=section.number("tdp_watts", required=True, minimum=0, exclusive_minimum=True),
        mig_slices=int(section.number("mig_slices", required=True, minimum=0)),
        purchase_usd=section.number("purchase_usd", required=True, minimum=0, exclusive_minimum=True),
        released=int(section.number("released", required=True, minimum=1990, maximum=2100)),
    )
    section.finish()
    return gpu


def _instance(name: str, located: Located, gpu_types: Mapping[str, GpuType],
              default_source: str | None, default_as_of: str | None) -> Instance:
    """One instance entry; source and as_of default to the provider's (required where there is none)."""
    entry = Section(located)
    gpu_type = entry.string("gpu_type")
    if gpu_type is not None and gpu_type not in gpu_types:
        raise entry.raw("gpu_type").error(f'unknown GPU type "{gpu_type}" (known: {", ".join(sorted(gpu_types))})')
    instance = Instance(
        name=name,
        hourly_usd=entry.number("hourly_usd", required=True, minimum=0, exclusive_minimum=True),
        vcpus=entry.number("vcpus", required=True, minimum=0, exclusive_minimum=True),
        memory_gib=entry.number("memory_gib", required=True, minimum=0, exclusive_minimum=True),
        gpu_type=gpu_type,
        gpus=int(entry.number("gpus", default=1 if gpu_type else 0, minimum=0)),
        source=entry.string("source", default_source, required=default_source is None),
        as_of=_as_of(entry, "as_of", default_as_of),
        note=entry.string("note"),
    )
    entry.finish()
    if instance.gpu_type and instance.gpus < 1:
        raise located.error("an instance with a gpu_type needs gpus >= 1")
    if instance.gpus and not instance.gpu_type:
        raise located.error("an instance with gpus needs a gpu_type")
    return instance


def gpu_offers(instances: Mapping[str, Instance]) -> Mapping[str, GpuOffer]:
    """Each GPU type's share of its reference instance: the first instance listed with that GPU type."""
    offers: dict[str, GpuOffer] = {}
    for instance in instances.values():
        if instance.gpu_type and instance.gpu_type not in offers:
            offers[instance.gpu_type] = GpuOffer(
                instance=instance.name,
                hourly_usd=instance.hourly_usd / instance.gpus,
                vcpus=instance.vcpus / instance.gpus,
                memory_gib=instance.memory_gib / instance.gpus,
                source=instance.source,
                as_of=instance.as_of,
            )
    return MappingProxyType(offers)


def _provider(name: str, section: Section, gpu_types: Mapping[str, GpuType]) -> Provider:
    source = section.string("source", required=True)
    as_of = _as_of(section, "as_of", None)
    vcpu = section.number("vcpu_hourly_usd", required=True, minimum=0)
    memory = section.number("memory_gib_hourly_usd", required=True, minimum=0)
    options_section = section.section("purchase_options", required=True)
    options = {}
    for option in PURCHASE_OPTIONS:
        options[option] = options_section.number(option, required=True, minimum=0, maximum=1, exclusive_minimum=True)
    options_section.finish()
    instances = {instance_name: _instance(instance_name, located, gpu_types, source, as_of)
                 for instance_name, located in section.section("instances", required=True)}
    provider = Provider(
        name=name,
        source=source,
        as_of=as_of,
        vcpu_hourly_usd=vcpu,
        memory_gib_hourly_usd=memory,
        purchase_options=MappingProxyType(options),
        instances=MappingProxyType(instances),
        gpu_offers=gpu_offers(instances),
        storage_classes=parse_storage_classes(section.section("storage_classes")),
        egress=parse_egress(section.section("egress")),
    )
    section.finish()
    return provider


def parse_catalog(text: str, source: str) -> Catalog:
    """Validate catalog YAML text into a Catalog; any problem raises ConfigError with its line."""
    root = Section(load_located(text, source))
    gpu_types = {gpu_id: _gpu_type(gpu_id, Section(item)) for gpu_id, item in root.section("gpu_types", True)}
    providers_section = root.section("providers", required=True)
    providers = {}
    for name in CLOUD_PROVIDERS:
        providers[name] = _provider(name, providers_section.section(name, required=True), gpu_types)
    providers_section.finish()
    onprem_section = root.section("onprem", required=True)
    onprem = OnPremDefaults(
        source=onprem_section.string("source", required=True),
        as_of=onprem_section.string("as_of", required=True),
        amortization_years=onprem_section.number("amortization_years", required=True, minimum=0,
                                                 exclusive_minimum=True),
        power_usd_per_kwh=onprem_section.number("power_usd_per_kwh", required=True, minimum=0),
        pue=onprem_section.number("pue", required=True, minimum=1),
        vcpu_purchase_usd=onprem_section.number("vcpu_purchase_usd", required=True, minimum=0),
        memory_gib_purchase_usd=onprem_section.number("memory_gib_purchase_usd", required=True, minimum=0),
    )
    onprem_section.finish()
    hosted = parse_hosted_models(root.section("hosted_models"))
    root.finish()
    return Catalog(MappingProxyType(gpu_types), MappingProxyType(providers), onprem, hosted)


@cache
def embedded_catalog() -> Catalog:
    """The catalog shipped inside the package."""
    text = resources.files("ml_cost_exporter.config").joinpath("catalog.yaml").read_text()
    try:
        return parse_catalog(text, "catalog.yaml")
    except ConfigError as exc:  # a broken embedded table is a packaging bug, not user input
        raise RuntimeError(f"embedded price catalog is invalid: {exc}") from exc


def apply_overlay(base: Catalog, text: str, source: str) -> Catalog:
    """The catalog with an overlay's instances replacing or adding to the base's, validated like the catalog.

    An overlay entry replaces the base instance of the same name in place (so a
    reference instance stays the reference) or is appended. Every overlay entry
    names its own source and month: an overlay has no provider-wide defaults.
    """
    root = Section(load_located(text, source))
    version = root.raw("overlay_version")
    if version is None:
        raise root.missing("overlay_version", f"is required (this reader knows version {OVERLAY_VERSION})")
    if version.value != OVERLAY_VERSION:
        raise version.error(f"unsupported overlay version {version.value!r} (this reader knows {OVERLAY_VERSION})")
    providers = dict(base.providers)
    providers_section = root.section("providers", required=True)
    for name, located in providers_section:
        if name not in CLOUD_PROVIDERS:
            raise located.error(f'unknown provider (known: {", ".join(CLOUD_PROVIDERS)})')
        section = Section(located)
        instances = dict(providers[name].instances)
        for instance_name, entry in section.section("instances", required=True):
            instances[instance_name] = _instance(instance_name, entry, base.gpu_types, None, None)
        section.finish()
        providers[name] = replace(providers[name], instances=MappingProxyType(instances),
                                  gpu_offers=gpu_offers(instances))
    root.finish()
    return replace(base, providers=MappingProxyType(providers))
