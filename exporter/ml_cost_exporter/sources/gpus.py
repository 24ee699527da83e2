"""Which GPU source the config asks for, and the check that it sees the GPUs the allocation prices.

A sidecar whose container runtime hides the GPUs (Bottlerocket ignores NVIDIA_VISIBLE_DEVICES in
unprivileged containers) would otherwise price from the config alone and look healthy. The check says so
once in the log, naming the likely cause and the fix, and keeps a 0/1 state an alert can watch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.sources.dcgm import DcgmGpuSource
from ml_cost_exporter.sources.nvml import GpuSample, NvmlGpuSource, visible_devices

log = logging.getLogger(__name__)

NVML_HINT = ("NVML cannot reach the GPUs from this container. The likely cause: the container runtime gives "
             "unprivileged containers no GPU through NVIDIA_VISIBLE_DEVICES (Bottlerocket's NVIDIA runtime does "
             "so by default, visible-devices-envvar-when-unprivileged: false). Fix: set gpu.source: dcgm to read "
             "the node's dcgm-exporter (k8s/components/sidecar-dcgm), or allow the variable on the node")


def make_gpu_source(config: Config, environ: Mapping[str, str] | None,
                    monotonic: Callable[[], float] = time.monotonic) -> NvmlGpuSource | DcgmGpuSource:
    """The GPU source `gpu.source` names, set up from the config."""
    if config.gpu.source == "dcgm":
        collection = config.collection
        return DcgmGpuSource(config.gpu.dcgm, collection.server_timeout_seconds, collection.max_body_bytes,
                             collection.max_series_per_source, collection.interval_seconds, environ=environ,
                             monotonic=monotonic, catalog=config.catalog)
    return NvmlGpuSource(config.allocation.visible_devices, environ=environ, monotonic=monotonic)


def source_name(source: object) -> str:
    """The GPU source's name in mlcost_exporter_source_up{source}."""
    return getattr(source, "name", "nvml")


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

    def check(self, config: Config, sample: GpuSample | None, source: object,
              environ: Mapping[str, str], process_devices: tuple[str, ...] | None = None) -> bool:
        devices = process_devices or visible_devices(config.allocation.visible_devices, environ)
        expected = expected_gpus(config, devices)
        mismatch = sample is not None and expected > 0 and not sample.gpus and self._sees_none(sample, source)
        if mismatch and not self.active:
            log.error("the allocation prices %g GPU(s) but the %s GPU source sees none (%s); cost is priced "
                      "from the config alone. %s", expected, source_name(source), sample.error or "no GPU listed",
                      self._hint(source))
        elif self.active and not mismatch:
            log.info("the %s GPU source sees this pod's GPUs again", source_name(source))
        self.active = mismatch
        return mismatch

    @staticmethod
    def _sees_none(sample: GpuSample, source: object) -> bool:
        # An unreachable dcgm-exporter is a failing collector (its own alert), not a hidden GPU; NVML that
        # cannot start in the container is exactly the hidden-GPU case.
        return sample.ok or source_name(source) == "nvml"

    @staticmethod
    def _hint(source: object) -> str:
        if source_name(source) == "dcgm":
            return (getattr(source, "empty_hint", None) or "") + (
                ". Check that POD_NAME/POD_NAMESPACE name this pod and that the server container holds the GPU")
        return NVML_HINT
