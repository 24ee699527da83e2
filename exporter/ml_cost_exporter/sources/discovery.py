"""Zero-config allocation: what the container can see (GPUs via NVML, cgroup CPU and memory limits)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psutil

from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.config.units import GIB
from ml_cost_exporter.cost.pricing import ResolvedAllocation
from ml_cost_exporter.sources.nvml import GpuSample

log = logging.getLogger(__name__)
# cgroup v1 reports "no limit" as a huge page-aligned number.
_UNLIMITED_V1 = 1 << 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path) -> float | None:
    """CPU cores allowed by the cgroup (v2 cpu.max, else v1 CFS quota); None if unlimited."""
    value = _read(root / "cpu.max")
    if value:
        quota, _, period = value.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def cgroup_memory_limit(root: Path) -> float | None:
    """Bytes allowed by the cgroup (v2 memory.max, else v1 limit_in_bytes); None if unlimited."""
    value = _read(root / "memory.max") or _read(root / "memory" / "memory.limit_in_bytes")
    if not value or value == "max" or int(value) >= _UNLIMITED_V1:
        return None
    return float(value)


def resolve_allocation(config: Config, gpus: GpuSample | None, cgroup_root: Path) -> ResolvedAllocation:
    """Fill in what the config leaves open from what this container can see."""
    allocation = config.allocation
    catalog = config.catalog
    if allocation.instance_type is not None:
        provider = catalog.providers[config.pricing.provider]
        instance = provider.instances[allocation.instance_type]
        share = allocation.instance_share
        gpu_type = catalog.gpu_types[instance.gpu_type] if instance.gpu_type else None
        return ResolvedAllocation(gpu_type, instance.gpus * share, instance.vcpus * share,
                                  instance.memory_gib * share)
    readings = gpus.gpus if gpus is not None else ()
    gpu_type, units = None, 0.0
    if allocation.gpu is not None:
        configured = allocation.gpu
        if configured.type is not None:
            gpu_type = catalog.gpu_types[configured.type]
        elif readings:
            gpu_type = catalog.gpu_type_for_nvml_name(readings[0].name)
        if configured.count is not None:
            units = configured.count * (configured.mig_fraction or 1.0)
        elif configured.mig_fraction is not None:
            units = configured.mig_fraction
        elif readings:
            units = sum(r.gpu_units for r in readings)
        else:
            units = 1.0  # a GPU was configured but NVML cannot count it: price one
    elif readings:
        units = sum(r.gpu_units for r in readings)
        gpu_type = catalog.gpu_type_for_nvml_name(readings[0].name)
        if gpu_type is None:
            log.warning('GPU "%s" is not in the price catalog; set allocation.gpu.type or '
                        "pricing.overrides.gpu_hourly_usd", readings[0].name)
    vcpus = allocation.vcpus or cgroup_cpu_limit(cgroup_root) or float(os.cpu_count() or 1)
    memory_gib = allocation.memory_gib
    if memory_gib is None:
        limit = cgroup_memory_limit(cgroup_root)
        memory_gib = (limit if limit is not None else psutil.virtual_memory().total) / GIB
    if gpu_type is not None and config.pricing.provider != "onprem" and config.pricing.gpu_hourly_usd is None \
            and gpu_type.id not in catalog.providers[config.pricing.provider].gpu_offers:
        log.warning('%s has no price for GPU type "%s" in the catalog; GPUs are priced at 0',
                    config.pricing.provider, gpu_type.id)
        gpu_type, units = None, 0.0
    return ResolvedAllocation(gpu_type, units if (gpu_type or config.pricing.gpu_hourly_usd) else 0.0,
                              vcpus, memory_gib)
