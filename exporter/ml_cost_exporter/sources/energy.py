"""The GPUs' energy over one sampling interval, from NVML's (or DCGM's) readings.

A GPU with a hardware energy counter (Volta and newer) is measured by the
counter's increase, which integrates power over the whole interval; one without
is estimated as its power at the end of the interval times the interval's length,
as utilization is. Where any of the pod's GPUs reports neither (MIG slices,
unsupported boards, no GPU source), the interval's energy is unknown: None, so
energy series stay absent rather than read as zero.
"""

from __future__ import annotations

from ml_cost_exporter.sources.nvml import GpuSample


def interval_energy_joules(previous: GpuSample | None, current: GpuSample | None, seconds: float) -> float | None:
    """Joules the pod's GPUs drew over an interval of `seconds` ending at `current`."""
    if current is None or not current.ok or not current.gpus or seconds <= 0:
        return None
    before = {g.uuid: g.energy_joules for g in previous.gpus} if previous is not None and previous.ok else {}
    total = 0.0
    for gpu in current.gpus:
        earlier = before.get(gpu.uuid)
        if gpu.energy_joules is not None and earlier is not None and gpu.energy_joules >= earlier:
            total += gpu.energy_joules - earlier  # a lower value is a driver reload: fall back to power
        elif gpu.power_watts is not None and gpu.power_watts >= 0:
            total += gpu.power_watts * seconds
        else:
            return None
    return total
