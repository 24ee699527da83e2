"""Zero-config discovery: what the container can see (cgroup CPU and memory limits, else the host's)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ml_cost_exporter.config.units import GIB
from ml_cost_exporter.cost.allocation import HostLimits, SeenGpu
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


def host_memory_bytes() -> float:
    """The machine's physical memory (psutil only where the OS has no sysconf for it)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        import psutil  # imported only here: it costs the sidecar about 3 MB of memory

        return float(psutil.virtual_memory().total)


def discover_host(cgroup_root: Path) -> HostLimits:
    """The CPU and memory this container may use: the cgroup's limits, else the host's totals."""
    cpu_limit, memory_limit = cgroup_cpu_limit(cgroup_root), cgroup_memory_limit(cgroup_root)
    vcpus = cpu_limit or float(os.cpu_count() or 1)
    memory = memory_limit if memory_limit is not None else host_memory_bytes()
    return HostLimits(vcpus, memory / GIB, "cgroup limit" if cpu_limit else "host total",
                      "cgroup limit" if memory_limit is not None else "host total")


def seen_gpus(sample: GpuSample | None) -> tuple[SeenGpu, ...]:
    """The GPUs a source read, as the allocation needs them: name and GPU units."""
    if sample is None:
        return ()
    return tuple(SeenGpu(g.name, g.gpu_units) for g in sample.gpus)
