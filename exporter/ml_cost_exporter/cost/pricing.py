"""Turns the pod's allocation into hourly prices by resource. The one place money rates are set."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ml_cost_exporter.config.bill import Volume
from ml_cost_exporter.config.catalog import CLOUD_PROVIDERS, GpuType
from ml_cost_exporter.config.located import suggest
from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.config.units import GIB

log = logging.getLogger(__name__)
HOURS_PER_YEAR = 8760.0
HOURS_PER_MONTH = HOURS_PER_YEAR / 12  # 730: the month a GiB-month price is divided by
RESOURCES = ("gpu", "cpu", "memory", "energy", "fixed", "storage", "network")


@dataclass(frozen=True)
class ResolvedAllocation:
    """What the pod holds, with every unknown filled in by discovery."""

    gpu_type: GpuType | None
    gpus: float  # GPU units: a MIG slice counts as its fraction of the parent
    vcpus: float
    memory_gib: float
    # Where each figure came from, for the start-up summary: "config", "cgroup limit", "host total", ...
    vcpus_from: str = "config"
    memory_from: str = "config"


@dataclass(frozen=True)
class BillRates:
    """Storage and egress prices of this pod; what has no price is listed as unpriced, never priced at 0."""

    volume_usd_per_gib_hour: Mapping[str, float] = field(default_factory=dict)  # priced volumes, by name
    volume_sizes_gib: Mapping[str, float] = field(default_factory=dict)  # sizes given in the config
    egress_usd_per_gib: float | None = None  # None: egress not priced
    unpriced: tuple[tuple[str, str], ...] = ()  # (source, reason) known when pricing, e.g. an unknown class

    def storage_usd_per_hour(self, sizes_gib: Mapping[str, float]) -> float:
        """The priced volumes at these sizes; a volume with no known size adds nothing (it is reported)."""
        return sum(rate * sizes_gib[name] for name, rate in self.volume_usd_per_gib_hour.items() if name in sizes_gib)

    def egress_usd(self, bytes_sent: float) -> float:
        return egress_usd(self.egress_usd_per_gib or 0.0, bytes_sent / GIB)


def storage_usd(usd_per_gib_month: float, gib: float, months: float) -> float:
    """What `gib` of a class costs for `months` (a month is 730 hours)."""
    return usd_per_gib_month * gib * months


def egress_usd(usd_per_gib: float, gib: float) -> float:
    return usd_per_gib * gib


@dataclass(frozen=True)
class CostRates:
    """Hourly prices of what the pod holds; energy is priced per kWh of measured power."""

    gpu_usd_per_hour: float
    cpu_usd_per_hour: float
    memory_usd_per_hour: float
    fixed_usd_per_hour: float
    energy_usd_per_kwh: float  # 0 in the cloud, where energy is in the price
    fallback_power_watts: float  # the GPUs' TDP, used for energy while power is not measured
    allocation: ResolvedAllocation
    bill: BillRates = BillRates()

    def static_usd_per_hour(self) -> dict[str, float]:
        return {"gpu": self.gpu_usd_per_hour, "cpu": self.cpu_usd_per_hour,
                "memory": self.memory_usd_per_hour, "fixed": self.fixed_usd_per_hour}

    def resources(self) -> tuple[str, ...]:
        """Resources this pod is charged for: energy only where it is priced separately (on-prem), storage
        and network only where volumes or egress are priced."""
        charged = {"energy": self.energy_usd_per_kwh > 0, "storage": bool(self.bill.volume_usd_per_gib_hour),
                   "network": self.bill.egress_usd_per_gib is not None}
        return tuple(r for r in RESOURCES if charged.get(r, True))


def price_allocation(config: Config, allocation: ResolvedAllocation) -> CostRates:
    rates = _price_compute(config, allocation)
    return replace(rates, bill=price_bill(config))


def _price_compute(config: Config, allocation: ResolvedAllocation) -> CostRates:
    pricing = config.pricing
    if pricing.provider in CLOUD_PROVIDERS:
        return _price_cloud(config, allocation)
    onprem = pricing.onprem
    hours = onprem.amortization_years * HOURS_PER_YEAR
    gpu_purchase = onprem.gpu_purchase_usd or (allocation.gpu_type.purchase_usd if allocation.gpu_type else 0.0)
    gpu_hourly = pricing.gpu_hourly_usd if pricing.gpu_hourly_usd is not None else gpu_purchase / hours
    vcpu_hourly = pricing.vcpu_hourly_usd if pricing.vcpu_hourly_usd is not None else onprem.vcpu_purchase_usd / hours
    memory_hourly = (pricing.memory_gib_hourly_usd if pricing.memory_gib_hourly_usd is not None
                     else onprem.memory_gib_purchase_usd / hours)
    tdp = allocation.gpu_type.tdp_watts if allocation.gpu_type else 0.0
    return CostRates(
        gpu_usd_per_hour=allocation.gpus * gpu_hourly,
        cpu_usd_per_hour=allocation.vcpus * vcpu_hourly,
        memory_usd_per_hour=allocation.memory_gib * memory_hourly,
        fixed_usd_per_hour=pricing.fixed_hourly_usd,
        energy_usd_per_kwh=onprem.power_usd_per_kwh * onprem.pue,
        fallback_power_watts=allocation.gpus * tdp,
        allocation=allocation,
    )


def _paid_rate(override: float | None, catalog_rate: float, ratio: float, basis: str) -> float:
    """An hourly rate as paid: catalog rates and on-demand-basis overrides take the purchase fraction."""
    if override is None:
        return catalog_rate * ratio
    return override if basis == "paid" else override * ratio


def _price_cloud(config: Config, allocation: ResolvedAllocation) -> CostRates:
    """Cloud rates as paid. Catalog prices are on-demand list prices and take the purchase option's
    fraction (or price_ratio); overrides are taken as paid unless `overrides.basis: on_demand`, so a
    price the user typed in is never discounted twice.
    """
    pricing = config.pricing
    provider = config.catalog.providers[pricing.provider]
    ratio = pricing.price_ratio if pricing.price_ratio is not None else provider.purchase_options[
        pricing.purchase_option]
    basis = pricing.overrides_basis
    vcpu_rate = _paid_rate(pricing.vcpu_hourly_usd, provider.vcpu_hourly_usd, ratio, basis)
    memory_rate = _paid_rate(pricing.memory_gib_hourly_usd, provider.memory_gib_hourly_usd, ratio, basis)
    cpu = allocation.vcpus * vcpu_rate
    memory = allocation.memory_gib * memory_rate
    gpu = 0.0
    if config.allocation.instance_type is not None:
        instance = provider.instances[config.allocation.instance_type]
        total = instance.hourly_usd * config.allocation.instance_share * ratio
        if instance.gpus:
            gpu = max(total - cpu - memory, 0.0)
        else:  # a CPU instance: its price split between vCPUs and memory in the unit rates' proportion
            scale = total / (cpu + memory)
            cpu, memory = cpu * scale, memory * scale
    elif allocation.gpus > 0 and pricing.gpu_hourly_usd is not None:
        # An override prices the GPU alone.
        gpu = allocation.gpus * _paid_rate(pricing.gpu_hourly_usd, 0.0, ratio, basis)
    elif allocation.gpus > 0 and allocation.gpu_type is not None:
        offer = provider.gpu_offers[allocation.gpu_type.id]
        # The GPU's share of its reference instance includes a host share; the pod's own
        # vCPUs and memory up to that share are carved out so they are paid once.
        included = (min(allocation.vcpus, offer.vcpus * allocation.gpus) * vcpu_rate
                    + min(allocation.memory_gib, offer.memory_gib * allocation.gpus) * memory_rate)
        gpu = max(allocation.gpus * offer.hourly_usd * ratio - included, 0.0)
    return CostRates(
        gpu_usd_per_hour=gpu,
        cpu_usd_per_hour=cpu,
        memory_usd_per_hour=memory,
        fixed_usd_per_hour=pricing.fixed_hourly_usd,
        energy_usd_per_kwh=0.0,
        fallback_power_watts=0.0,
        allocation=allocation,
    )


# --- the rest of the bill: volumes and egress ----------------------------------------------------

def _volume_usd_per_gib_month(config: Config, volume: Volume) -> float | None:
    """The volume's price: its own, else its class's in the catalog; None (with one warning) if neither."""
    if volume.usd_per_gib_month is not None:
        return volume.usd_per_gib_month
    provider = config.catalog.providers.get(config.pricing.provider)
    classes = provider.storage_classes if provider is not None else {}
    if volume.storage_class in classes:
        return classes[volume.storage_class].usd_per_gib_month
    log.warning('volume "%s": %s has no storage class "%s" in the catalog%s; its storage is unpriced (set '
                "usd_per_gib_month)", volume.name, config.pricing.provider, volume.storage_class,
                suggest(volume.storage_class, list(classes)))
    return None


def _egress_usd_per_gib(config: Config) -> float | None:
    network = config.network
    if network.usd_per_gib is not None:
        return network.usd_per_gib
    provider = config.catalog.providers.get(config.pricing.provider)
    if provider is None or provider.egress is None:
        log.warning("network: %s has no egress prices in the catalog; egress is unpriced (set network.usd_per_gib)",
                    config.pricing.provider)
        return None
    return provider.egress.usd_per_gib(network.destination, network.monthly_internet_gib)


def price_bill(config: Config) -> BillRates:
    """Hourly prices of the configured volumes per GiB, and the price of a GiB sent."""
    rates, unpriced = {}, []
    for volume in config.volumes:
        monthly = _volume_usd_per_gib_month(config, volume)
        if monthly is None:
            unpriced.append((f"volume:{volume.name}", "unknown_class"))
        else:
            rates[volume.name] = monthly / HOURS_PER_MONTH
    egress = None
    if config.network is not None:
        egress = _egress_usd_per_gib(config)
        if egress is None:
            unpriced.append(("network", "no_price"))
    sizes = {v.name: v.size_gib for v in config.volumes if v.size_gib is not None}
    return BillRates(rates, sizes, egress, tuple(unpriced))
