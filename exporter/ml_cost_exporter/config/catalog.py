"""The embedded price catalog: GPU types, cloud instance prices, on-prem defaults.

The catalog is data (catalog.yaml) validated strictly at load, so a typo in a
price table fails loudly with its line instead of pricing a GPU at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Section, load_located

PURCHASE_OPTIONS = ("on_demand", "spot", "commit_1y", "commit_3y")
CLOUD_PROVIDERS = ("aws", "gcp", "azure")


@dataclass(frozen=True)
class GpuType:
    id: str
    display_name: str
    nvml_names: tuple[str, ...]
    memory_gib: float
    tdp_watts: float
    mig_slices: int
    purchase_usd: float


@dataclass(frozen=True)
class Instance:
    name: str
    hourly_usd: float
    vcpus: float
    memory_gib: float
    gpu_type: str | None
    gpus: int


@dataclass(frozen=True)
class GpuOffer:
    """One GPU's share of its reference instance: the price and the host that comes with it."""

    instance: str
    hourly_usd: float
    vcpus: float
    memory_gib: float


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
    )
    section.finish()
    return gpu


def _provider(name: str, section: Section, gpu_types: Mapping[str, GpuType]) -> Provider:
    vcpu = section.number("vcpu_hourly_usd", required=True, minimum=0)
    memory = section.number("memory_gib_hourly_usd", required=True, minimum=0)
    options_section = section.section("purchase_options", required=True)
    options = {}
    for option in PURCHASE_OPTIONS:
        options[option] = options_section.number(option, required=True, minimum=0, maximum=1, exclusive_minimum=True)
    options_section.finish()
    instances: dict[str, Instance] = {}
    gpu_offers: dict[str, GpuOffer] = {}
    for instance_name, located in section.section("instances", required=True):
        entry = Section(located)
        gpu_type = entry.string("gpu_type")
        if gpu_type is not None and gpu_type not in gpu_types:
            raise entry.raw("gpu_type").error(f'unknown GPU type "{gpu_type}"')
        instance = Instance(
            name=instance_name,
            hourly_usd=entry.number("hourly_usd", required=True, minimum=0, exclusive_minimum=True),
            vcpus=entry.number("vcpus", required=True, minimum=0, exclusive_minimum=True),
            memory_gib=entry.number("memory_gib", required=True, minimum=0, exclusive_minimum=True),
            gpu_type=gpu_type,
            gpus=int(entry.number("gpus", default=1 if gpu_type else 0, minimum=0)),
        )
        entry.finish()
        if instance.gpu_type and instance.gpus < 1:
            raise located.error("an instance with a gpu_type needs gpus >= 1")
        if instance.gpu_type and instance.gpu_type not in gpu_offers:
            gpu_offers[instance.gpu_type] = GpuOffer(
                instance=instance_name,
                hourly_usd=instance.hourly_usd / instance.gpus,
                vcpus=instance.vcpus / instance.gpus,
                memory_gib=instance.memory_gib / instance.gpus,
            )
        instances[instance_name] = instance
    provider = Provider(
        name=name,
        source=section.string("source", required=True),
        as_of=section.string("as_of", required=True),
        vcpu_hourly_usd=vcpu,
        memory_gib_hourly_usd=memory,
        purchase_options=MappingProxyType(options),
        instances=MappingProxyType(instances),
        gpu_offers=MappingProxyType(gpu_offers),
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
    root.finish()
    return Catalog(MappingProxyType(gpu_types), MappingProxyType(providers), onprem)


@cache
def embedded_catalog() -> Catalog:
    """The catalog shipped inside the package."""
    text = resources.files("ml_cost_exporter.config").joinpath("catalog.yaml").read_text()
    try:
        return parse_catalog(text, "catalog.yaml")
    except ConfigError as exc:  # a broken embedded table is a packaging bug, not user input
        raise RuntimeError(f"embedded price catalog is invalid: {exc}") from exc
