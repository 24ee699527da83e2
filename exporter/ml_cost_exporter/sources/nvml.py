"""GPU readings through NVML (nvidia-ml-py). Never raises: failures become a failed sample.

NVML init is retried with exponential backoff, so a node without a driver
costs one failed dlopen per backoff step, not one per scrape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.sources.gpu_registry import register_gpu_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    index: str  # the GPU's NVML index; a MIG device carries its parent's
    uuid: str
    name: str
    utilization: float | None  # 0..1; None where NVML does not report it (MIG devices)
    memory_used_bytes: float
    memory_total_bytes: float
    power_watts: float | None
    mig_gpu_instance: str = ""
    mig_compute_instance: str = ""
    parent_memory_total_bytes: float | None = None  # set on MIG devices
    energy_joules: float | None = None  # NVML's total energy counter since the driver loaded, where the GPU has one

    @property
    def gpu_units(self) -> float:
        """1 for a whole GPU; a MIG device's share of its parent, by memory."""
        if self.parent_memory_total_bytes:
            return self.memory_total_bytes / self.parent_memory_total_bytes
        return 1.0


@dataclass(frozen=True)
class GpuSample:
    ok: bool
    gpus: tuple[GpuReading, ...]
    error: str | None = None


def visible_devices(configured: tuple[str, ...] | None, environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The devices this pod may use: config, else NVIDIA_VISIBLE_DEVICES, else CUDA_VISIBLE_DEVICES.

    None means every device NVML shows; an empty tuple means none.
    """
    if configured is not None:
        return configured
    for variable in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = environ.get(variable)
        if value is None:
            continue
        value = value.strip()
        if value in ("all", ""):
            return None if value == "all" else ()
        if value in ("none", "void", "NoDevFiles"):
            return ()
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# Where NVML cannot reach a GPU, the likely cause and its fix depend on where the exporter runs.
NVML_ADVICE = {
    "kubernetes": "in Kubernetes the GPU must reach this container: a resources.limits nvidia.com/gpu from the "
                  "device plugin, or NVIDIA_VISIBLE_DEVICES with the NVIDIA runtime. Where the runtime gives "
                  "unprivileged containers no GPU through that variable (Bottlerocket: "
                  "visible-devices-envvar-when-unprivileged: false), set gpu.source: dcgm to read the node's "
                  "dcgm-exporter (k8s/components/sidecar-dcgm)",
    "container": "run the container with the NVIDIA Container Toolkit (docker run --gpus all), or set gpu.source: "
                 "dcgm to read the node's dcgm-exporter",
    "host": "this machine shows no usable NVIDIA driver (libnvidia-ml.so.1); install the driver, or price the GPU "
            "from the config alone (allocation.gpu) if it is elsewhere",
}


def where_running(environ: Mapping[str, str], root: Path = Path("/")) -> str:
    """kubernetes, container or host: what advice about a missing GPU should speak of."""
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists():
        return "container"
    return "host"


def nvml_advice(environ: Mapping[str, str]) -> str:
    return NVML_ADVICE[where_running(environ)]


class NvmlGpuSource:
    """Reads the pod's GPUs (and MIG devices) through the real NVML bindings."""

    name = "nvml"
    hidden_when_unreachable = True  # NVML that cannot start in the container is the hidden-GPU case

    def __init__(self, visible: tuple[str, ...] | None = None,
                 environ: Mapping[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 backoff_initial_seconds: float = 1.0, backoff_max_seconds: float = 300.0) -> None:
        self._environ = os.environ if environ is None else environ
        self._visible = visible_devices(visible, self._environ)
        self._monotonic = monotonic
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds
        self._backoff = backoff_initial_seconds
        self._next_init_at = 0.0
        self._initialized = False

    def set_visible(self, configured: tuple[str, ...] | None) -> None:
        self._visible = visible_devices(configured, self._environ)

    def parse_counts(self) -> None:
        return None  # NVML hands over numbers, not text: nothing to drop or refuse

    def mismatch_hint(self) -> str:
        return "NVML cannot reach the GPUs here: " + nvml_advice(self._environ)

    def _ensure_init(self) -> str | None:
        if self._initialized:
            return None
        now = self._monotonic()
        if now < self._next_init_at:
            return f"NVML unavailable; next init attempt in {self._next_init_at - now:.0f}s"
        import pynvml

        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._next_init_at = now + self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            return f"nvmlInit failed: {exc}"
        self._initialized = True
        self._backoff = self._backoff_initial
        log.info("NVML initialized")
        return None

    def _reset(self) -> None:
        import pynvml

        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
        self._initialized = False
        self._next_init_at = self._monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)

    def _wanted(self, index: str, uuid: str) -> bool:
        return self._visible is None or index in self._visible or uuid in self._visible

    def sample(self) -> GpuSample:
        error = self._ensure_init()
        if error is not None:
            return GpuSample(False, (), error)
        import pynvml

        readings: list[GpuReading] = []
        failures: list[str] = []
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            self._reset()
            return GpuSample(False, (), f"nvmlDeviceGetCount failed: {exc}")
        for i in range(count):
            try:
                readings.extend(self._read_device(pynvml, i))
            except pynvml.NVMLError as exc:
                failures.append(f"GPU {i}: {exc}")
        if failures:
            # A lost GPU or a driver fault: start NVML afresh (after backoff) next time.
            self._reset()
            return GpuSample(False, tuple(readings), "; ".join(failures))
        return GpuSample(True, tuple(readings))

    def _read_device(self, pynvml, i: int) -> list[GpuReading]:
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
        name = _text(pynvml.nvmlDeviceGetName(handle))
        index = str(i)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        mig_devices = self._read_mig_devices(pynvml, handle, index, name, float(memory.total))
        out = []
        if self._wanted(index, uuid):
            utilization = None
            # GPUs in MIG mode report no whole-GPU utilization.
            with contextlib.suppress(pynvml.NVMLError_NotSupported):
                utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
            power = None
            with contextlib.suppress(pynvml.NVMLError_NotSupported):
                power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            energy = None
            # Volta and newer count energy in hardware; older GPUs answer NOT_SUPPORTED.
            with contextlib.suppress(pynvml.NVMLError_NotSupported):
                energy = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
            out.append(GpuReading(index, uuid, name, utilization, float(memory.used), float(memory.total), power,
                                  energy_joules=energy))
            if mig_devices:
                return out  # the whole GPU is the pod's: its MIG devices are not priced again
        out.extend(m for m in mig_devices if self._wanted(index, m.uuid))
        return out

    def _read_mig_devices(self, pynvml, handle, index: str, name: str, parent_total: float) -> list[GpuReading]:
        try:
            current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
        except pynvml.NVMLError_NotSupported:
            return []
        if current != pynvml.NVML_DEVICE_MIG_ENABLE:
            return []
        devices = []
        for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except pynvml.NVMLError_NotFound:
                continue
            memory = pynvml.nvmlDeviceGetMemoryInfo(mig)
            devices.append(GpuReading(
                index=index,
                uuid=_text(pynvml.nvmlDeviceGetUUID(mig)),
                name=name,
                utilization=None,
                memory_used_bytes=float(memory.used),
                memory_total_bytes=float(memory.total),
                power_watts=None,
                mig_gpu_instance=str(pynvml.nvmlDeviceGetGpuInstanceId(mig)),
                mig_compute_instance=str(pynvml.nvmlDeviceGetComputeInstanceId(mig)),
                parent_memory_total_bytes=parent_total,
            ))
        return devices

    def close(self) -> None:
        if self._initialized:
            import pynvml

            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
            self._initialized = False


@register_gpu_source("nvml")
def nvml_source(config: Config, environ: Mapping[str, str] | None, monotonic: Callable[[], float]) -> NvmlGpuSource:
    return NvmlGpuSource(config.allocation.visible_devices, environ=environ, monotonic=monotonic)
