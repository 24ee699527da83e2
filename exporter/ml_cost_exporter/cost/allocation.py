"""The allocation: what the pod holds, from the config, filled in from what the container can see."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ml_cost_exporter.config.schema import Config, gpu_priced
from ml_cost_exporter.cost.pricing import ResolvedAllocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeenGpu:
    """A GPU a source read: its driver name and its GPU units (a MIG slice is a fraction)."""

    name: str
    units: float


@dataclass(frozen=True)
class HostLimits:
    """CPU and memory the container may use (cgroup limits, else the host's totals), and which each is."""

    vcpus: float
    memory_gib: float
    vcpus_from: str = "cgroup limit"  # or "host total"
    memory_from: str = "cgroup limit"


def resolve_allocation(config: Config, gpus: Sequence[SeenGpu], host: HostLimits) -> ResolvedAllocation:
    """Fill in what the config leaves open from what this container can see."""
    allocation = config.allocation
    catalog = config.catalog
    if allocation.instance_type is not None:
        instance = catalog.providers[config.pricing.provider].instances[allocation.instance_type]
        share = allocation.instance_share
        gpu_type = catalog.gpu_types[instance.gpu_type] if instance.gpu_type else None
        return ResolvedAllocation(gpu_type, instance.gpus * share, instance.vcpus * share,
                                  instance.memory_gib * share)
    gpu_type, units = _gpus(config, gpus)
    if gpu_type is not None and not gpu_priced(config.pricing, catalog, gpu_type.id):
        log.warning('%s has no price for GPU type "%s" in the catalog; GPUs are priced at 0',
                    config.pricing.provider, gpu_type.id)
        gpu_type, units = None, 0.0
    units = units if (gpu_type or config.pricing.gpu_hourly_usd) else 0.0
    vcpus, vcpus_from = _host_part(allocation.vcpus, host.vcpus, host.vcpus_from, config, gpu_type, units, "vcpus")
    memory, memory_from = _host_part(allocation.memory_gib, host.memory_gib, host.memory_from, config, gpu_type,
                                     units, "memory_gib")
    return ResolvedAllocation(gpu_type, units, vcpus, memory, vcpus_from, memory_from)


def _host_part(configured: float | None, seen: float, seen_from: str, config: Config, gpu_type, units: float,
               field: str) -> tuple[float, str]:
    """CPU or memory: configured; else the cgroup's limit; else, beside a GPU, the GPU's share of its reference
    instance (a GPU VM is what is meant, not the whole host); else the host's total."""
    if configured is not None:
        return configured, "config"
    if seen_from != "host total" or gpu_type is None or units <= 0:
        return seen, seen_from
    provider = config.catalog.providers.get(config.pricing.provider)
    offer = provider.gpu_offers.get(gpu_type.id) if provider is not None else None
    if offer is None:
        return seen, seen_from
    return getattr(offer, field) * units, f"the GPU's share of {offer.instance}"


def _gpus(config: Config, seen: Sequence[SeenGpu]):
    """The GPU type and units: configured where set, else what the GPU source saw."""
    catalog = config.catalog
    configured = config.allocation.gpu
    if configured is None:
        if not seen:
            return None, 0.0
        gpu_type = catalog.gpu_type_for_nvml_name(seen[0].name)
        if gpu_type is None:
            log.warning('GPU "%s" is not in the price catalog; set allocation.gpu.type or '
                        "pricing.overrides.gpu_hourly_usd", seen[0].name)
        return gpu_type, sum(g.units for g in seen)
    if configured.type is not None:
        gpu_type = catalog.gpu_types[configured.type]
    else:
        gpu_type = catalog.gpu_type_for_nvml_name(seen[0].name) if seen else None
    if configured.count is not None:
        units = configured.count * (configured.mig_fraction or 1.0)
    elif configured.mig_fraction is not None:
        units = configured.mig_fraction
    elif seen:
        units = sum(g.units for g in seen)
    else:
        units = 1.0  # a GPU was configured but the source cannot count it: price one
    return gpu_type, units
