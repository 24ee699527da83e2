"""Turns the pod's allocation into hourly prices by resource. The one place money rates are set."""

from __future__ import annotations

from dataclasses import dataclass

from ml_cost_exporter.config.catalog import CLOUD_PROVIDERS, GpuType
from ml_cost_exporter.config.schema import Config

HOURS_PER_YEAR = 8760.0
RESOURCES = ("gpu", "cpu", "memory", "energy", "fixed")


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
class CostRates:
    """Hourly prices of what the pod holds; energy is priced per kWh of measured power."""

    gpu_usd_per_hour: float
    cpu_usd_per_hour: float
    memory_usd_per_hour: float
    fixed_usd_per_hour: float
    energy_usd_per_kwh: float  # 0 in the cloud, where energy is in the price
    fallback_power_watts: float  # the GPUs' TDP, used for energy while power is not measured
    allocation: ResolvedAllocation

    def static_usd_per_hour(self) -> dict[str, float]:
        return {"gpu": self.gpu_usd_per_hour, "cpu": self.cpu_usd_per_hour,
                "memory": self.memory_usd_per_hour, "fixed": self.fixed_usd_per_hour}

    def resources(self) -> tuple[str, ...]:
        """Resources this pod is charged for: energy only where it is priced separately (on-prem)."""
        return tuple(r for r in RESOURCES if r != "energy" or self.energy_usd_per_kwh > 0)


def price_allocation(config: Config, allocation: ResolvedAllocation) -> CostRates:
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
