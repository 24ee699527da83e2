"""The check that the GPU source sees the GPUs the allocation prices.

A sidecar whose container runtime hides the GPUs (Bottlerocket ignores NVIDIA_VISIBLE_DEVICES in
unprivileged containers) would otherwise price from the config alone and look healthy. The check says so
once in the log, naming the likely cause and the fix, and keeps a 0/1 state an alert can watch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.sources.gpu_registry import GpuSource
from ml_cost_exporter.sources.nvml import GpuSample, visible_devices

log = logging.getLogger(__name__)

def expected_gpus(config: Config, devices: tuple[str, ...] | None) -> float:
    """GPUs the allocation says this pod holds: configured, from an instance share, or named devices."""
    allocation = config.allocation
    if allocation.instance_type is not None:
        instance = config.catalog.providers[config.pricing.provider].instances[allocation.instance_type]
        return instance.gpus * allocation.instance_share
    if allocation.gpu is not None:
        return allocation.gpu.count or 1.0
    return float(len(devices or ()))


class GpuMismatch:
    """Whether the allocation names GPUs that the GPU source does not see; logs each change once."""

    def __init__(self) -> None:
        self.active = False

    def check(self, config: Config, sample: GpuSample | None, source: GpuSource,
              environ: Mapping[str, str], process_devices: tuple[str, ...] | None = None) -> bool:
        devices = process_devices or visible_devices(config.allocation.visible_devices, environ)
        expected = expected_gpus(config, devices)
        mismatch = (sample is not None and expected > 0 and not sample.gpus
                    and (sample.ok or source.hidden_when_unreachable))
        if mismatch and not self.active:
            log.error("the allocation prices %g GPU(s) but the %s GPU source sees none (%s); cost is priced "
                      "from the config alone. %s", expected, source.name, sample.error or "no GPU listed",
                      source.mismatch_hint())
        elif self.active and not mismatch:
            log.info("the %s GPU source sees this pod's GPUs again", source.name)
        self.active = mismatch
        return mismatch
