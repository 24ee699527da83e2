"""GPU readings from the node's dcgm-exporter, so the sidecar needs no NVML access of its own.

dcgm-exporter (NVIDIA's DaemonSet, installed by the GPU Operator) exports every GPU of its node; in its
Kubernetes mode it adds the `pod`, `namespace` and `container` each GPU (or MIG instance) is assigned to.
This source keeps this pod's GPUs (or the given UUIDs) and yields the same GpuSample as NVML, so pricing and
the ledger do not care which source was read. Units as dcgm-exporter exports them: DCGM_FI_DEV_FB_* in MiB,
POWER_USAGE in W, TOTAL_ENERGY_CONSUMPTION in mJ, GPU_UTIL in %, PROF_GR_ENGINE_ACTIVE a 0..1 ratio.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ml_cost_exporter.config.catalog import Catalog
from ml_cost_exporter.config.schema import Config, DcgmSelection
from ml_cost_exporter.config.units import GIB
from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern
from ml_cost_exporter.sources.fetch import Backoff, FetchError, KeptAliveFetch, fetch_text

# The one seam to the HTTP client: sources/fetch.py (a total deadline and a body cap) replaces this import.
from ml_cost_exporter.sources.gpu_registry import register_gpu_source
from ml_cost_exporter.sources.nvml import GpuReading, GpuSample, visible_devices

log = logging.getLogger(__name__)

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
FB_TOTAL = "DCGM_FI_DEV_FB_TOTAL"  # not among the default counters, read where configured
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
TOTAL_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
# Largest value each field can take: anything above (or negative, NaN, infinite) is an invalid sample.
FIELDS: Mapping[str, float] = {GPU_UTIL: 100.0, GR_ENGINE_ACTIVE: 1.0, FB_USED: math.inf, FB_FREE: math.inf,
                               FB_TOTAL: math.inf, POWER_USAGE: 100_000.0, TOTAL_ENERGY: math.inf}
MIB = 1024.0**2
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class DcgmDevice:
    """One GPU or MIG instance as dcgm-exporter labels it, with the fields read for it."""

    gpu: str
    uuid: str  # the physical GPU's UUID, also on its MIG instances
    model_name: str
    mig_profile: str  # GPU_I_PROFILE, e.g. "3g.40gb"; "" for a whole GPU
    mig_instance: str  # GPU_I_ID; "" for a whole GPU
    pod: str
    namespace: str
    values: dict[str, float] = field(default_factory=dict)

    @property
    def entity(self) -> tuple[str, str]:
        return (self.uuid, self.mig_instance)

    def describe(self) -> str:
        instance = f" MIG instance {self.mig_instance}" if self.mig_instance else ""
        return f"GPU {self.gpu} ({self.uuid}){instance}"


@dataclass(frozen=True)
class DcgmExposition:
    devices: tuple[DcgmDevice, ...]  # one per (GPU entity, pod, namespace), in exposition order
    invalid_samples: int
    dropped_series: int
    pod_labelled: bool  # whether any series names a pod: dcgm-exporter runs in its Kubernetes mode


_PATTERN = sample_pattern(FIELDS)


def parse_exposition(text: str, max_devices: int = 10_000) -> DcgmExposition:
    """The GPU entities of a dcgm-exporter /metrics text; malformed or out-of-range samples are counted."""
    devices: dict[tuple[str, ...], DcgmDevice] = {}
    invalid = dropped = 0
    pod_labelled = False
    for name, block, raw in iter_samples(text, _PATTERN):
        labels = parse_labels(block)
        value = _value(raw, FIELDS[name])
        uuid = (labels or {}).get("UUID") or (labels or {}).get("uuid")  # "uuid" under --use-old-namespace
        if labels is None or value is None or not uuid or not labels.get("gpu"):
            invalid += 1
            continue
        pod = labels.get("pod") or labels.get("pod_name", "")
        namespace = labels.get("namespace") or labels.get("pod_namespace", "")
        pod_labelled = pod_labelled or bool(pod)
        key = (uuid, labels.get("GPU_I_ID", ""), pod, namespace)
        device = devices.get(key)
        if device is None:
            if len(devices) >= max_devices:
                dropped += 1
                continue
            device = devices[key] = DcgmDevice(labels["gpu"], uuid, labels.get("modelName", ""),
                                               labels.get("GPU_I_PROFILE", ""), labels.get("GPU_I_ID", ""),
                                               pod, namespace)
        device.values.setdefault(name, value)  # a duplicated series: keep the first, as Prometheus does
    return DcgmExposition(tuple(devices.values()), invalid, dropped, pod_labelled)


def _value(raw: str, maximum: float) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    if math.isnan(value) or value < 0 or value > maximum:
        return None
    return value


@dataclass(frozen=True)
class DeviceSelector:
    """Which devices are this pod's: by pod and namespace, or by GPU UUID or index."""

    pod: str | None = None
    namespace: str | None = None
    devices: tuple[str, ...] | None = None

    def matches(self, device: DcgmDevice) -> bool:
        if self.devices is not None:
            return device.uuid in self.devices or device.gpu in self.devices
        return device.pod == self.pod and device.namespace == self.namespace

    def describe(self) -> str:
        if self.devices is not None:
            return "GPUs " + ",".join(self.devices)
        return f"pod {self.namespace}/{self.pod}"


def select(devices: tuple[DcgmDevice, ...], selector: DeviceSelector) -> list[DcgmDevice]:
    """The selected devices, each entity once; a whole GPU hides its own MIG instances, as with NVML."""
    chosen: dict[tuple[str, str], DcgmDevice] = {}
    for device in devices:
        if selector.matches(device):
            chosen.setdefault(device.entity, device)
    whole = {uuid for uuid, instance in chosen if not instance}
    return [d for (uuid, instance), d in chosen.items() if not instance or uuid not in whole]


def expand_url(template: str, environ: Mapping[str, str]) -> str:
    """Fill `${VAR}` placeholders from the environment; a missing variable is a ValueError naming it."""
    missing = [m.group(1) for m in _PLACEHOLDER.finditer(template) if not environ.get(m.group(1))]
    if missing:
        raise ValueError(f"gpu.dcgm.url {template}: environment variable {missing[0]} is not set")
    return _PLACEHOLDER.sub(lambda m: environ[m.group(1)], template)


class DcgmGpuSource:
    """Reads this pod's GPUs from dcgm-exporter's /metrics. Never raises: failures become a failed sample."""

    name = "dcgm"
    hidden_when_unreachable = False  # an unreachable dcgm-exporter is an outage with its own alert

    def __init__(self, selection: DcgmSelection, timeout: float, max_bytes: int, max_series: int,
                 interval: float, environ: Mapping[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, catalog: Catalog | None = None,
                 fetch: Callable[[str], str] | None = None) -> None:
        self._selection = selection
        self._environ = os.environ if environ is None else environ
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_series = max_series
        self._monotonic = monotonic
        self._catalog = catalog
        self._fetcher = KeptAliveFetch(self._timeout, self._max_bytes, selection.http)
        self._fetch = fetch or self._fetcher
        self._visible = visible_devices(None, self._environ)
        self._energy: dict[tuple[str, str], tuple[float, float]] = {}  # entity -> (monotonic s, mJ)
        self._backoff = Backoff(interval, "dcgm-exporter")
        self._last_error = "not read yet"
        self.invalid_samples_total = 0.0
        self.dropped_series_total = 0.0
        self.empty_hint: str | None = None  # why the last good read held none of this pod's GPUs
        try:
            self.url = expand_url(selection.url, self._environ)
            self._url_error = None
        except ValueError as exc:
            self.url, self._url_error = selection.url, str(exc)

    def set_visible(self, configured: tuple[str, ...] | None) -> None:
        """Devices named by the config or the serving processes; used only when no pod is known."""
        self._visible = visible_devices(configured, self._environ)

    def parse_counts(self) -> tuple[float, float]:
        return self.dropped_series_total, self.invalid_samples_total

    def mismatch_hint(self) -> str:
        return (self.empty_hint or "") + (
            ". Check that POD_NAME/POD_NAMESPACE name this pod and that the server container holds the GPU")

    def selector(self) -> DeviceSelector | None:
        """Config UUIDs, else the pod (config, else POD_NAME/POD_NAMESPACE), else the visible devices."""
        selection = self._selection
        if selection.uuids is not None:
            return DeviceSelector(devices=selection.uuids)
        pod = selection.pod or self._environ.get("POD_NAME")
        namespace = selection.namespace or self._environ.get("POD_NAMESPACE")
        if pod and namespace:
            return DeviceSelector(pod=pod, namespace=namespace)
        if self._visible:
            return DeviceSelector(devices=self._visible)
        return None

    def sample(self) -> GpuSample:
        if self._url_error is not None:
            return GpuSample(False, (), self._url_error)
        selector = self.selector()
        if selector is None:
            return GpuSample(False, (), "gpu.dcgm: no pod to select GPUs by: set POD_NAME and POD_NAMESPACE "
                                        "(downward API), gpu.dcgm.pod/namespace, or gpu.dcgm.uuids")
        now = self._monotonic()
        if self._backoff.waiting(now):
            return GpuSample(False, (), self._last_error)
        try:
            text = fetch_text(self._fetch, self.url)
        except FetchError as exc:
            self._last_error = f"dcgm-exporter {self.url}: {exc}"
            self._backoff.failed(now, f"{self.url}: {exc}")
            return GpuSample(False, (), self._last_error)
        self._backoff.succeeded()
        return self._read(text, selector, now)

    def _read(self, text: str, selector: DeviceSelector, now: float) -> GpuSample:
        exposition = parse_exposition(text, self._max_series)
        self.invalid_samples_total += exposition.invalid_samples
        self.dropped_series_total += exposition.dropped_series
        chosen = select(exposition.devices, selector)
        self.empty_hint = None if chosen else self._hint(exposition, selector)
        readings, problems = [], []
        for device in chosen:
            reading = self._reading(device, now)
            if reading is None:
                problems.append(f"{device.describe()}: no valid {FB_USED} and {FB_FREE}")
            else:
                readings.append(reading)
        if problems:
            return GpuSample(False, tuple(readings), "dcgm-exporter: " + "; ".join(problems))
        return GpuSample(True, tuple(readings))

    def _hint(self, exposition: DcgmExposition, selector: DeviceSelector) -> str:
        if not exposition.devices:
            return f"dcgm-exporter at {self.url} exports no GPU at all"
        if selector.devices is None and not exposition.pod_labelled:
            return (f"dcgm-exporter at {self.url} labels no GPU with a pod: run it in its Kubernetes mode "
                    "(DCGM_EXPORTER_KUBERNETES=true, with the kubelet's pod-resources socket mounted), "
                    "or select by gpu.dcgm.uuids")
        return f"dcgm-exporter at {self.url} has no GPU for {selector.describe()}"

    def _reading(self, device: DcgmDevice, now: float) -> GpuReading | None:
        values = device.values
        used, free = values.get(FB_USED), values.get(FB_FREE)
        if used is None or (free is None and FB_TOTAL not in values):
            return None
        total = values.get(FB_TOTAL, used + (free or 0.0)) * MIB
        mig = bool(device.mig_instance)
        utilization = values.get(GR_ENGINE_ACTIVE) if mig else None
        if not mig:
            util = values.get(GPU_UTIL)
            utilization = util / 100.0 if util is not None else values.get(GR_ENGINE_ACTIVE)
        return GpuReading(
            index=device.gpu, uuid=device.uuid, name=device.model_name, utilization=utilization,
            memory_used_bytes=used * MIB, memory_total_bytes=total,
            power_watts=None if mig else self._power(device, now),  # a slice's share of the board is unknown
            mig_gpu_instance=device.mig_instance,
            parent_memory_total_bytes=self._parent_memory(device) if mig else None,
            # The board's energy counter (mJ), which measures the interval's energy exactly; a slice has none.
            energy_joules=None if mig or TOTAL_ENERGY not in values else values[TOTAL_ENERGY] / 1000.0)

    def _power(self, device: DcgmDevice, now: float) -> float | None:
        """POWER_USAGE; where it is not exported, the average power since the last read, from the energy counter."""
        energy = device.values.get(TOTAL_ENERGY)
        previous = self._energy.get(device.entity)
        if energy is not None:
            self._energy[device.entity] = (now, energy)
        if POWER_USAGE in device.values:
            return device.values[POWER_USAGE]
        if energy is None or previous is None or now <= previous[0] or energy < previous[1]:
            return None
        return (energy - previous[1]) / 1000.0 / (now - previous[0])

    def _parent_memory(self, device: DcgmDevice) -> float | None:
        """The physical GPU's memory, from the catalog by model name: a MIG slice is priced by its share of it."""
        gpu_type = self._catalog.gpu_type_for_nvml_name(device.model_name) if self._catalog else None
        return gpu_type.memory_gib * GIB if gpu_type else None

    def close(self) -> None:
        self._fetcher.close()


@register_gpu_source("dcgm")
def dcgm_source(config: Config, environ: Mapping[str, str] | None, monotonic: Callable[[], float]) -> DcgmGpuSource:
    collection = config.collection
    return DcgmGpuSource(config.gpu.dcgm, collection.server_timeout_seconds, collection.max_body_bytes,
                         collection.max_series_per_source, collection.interval_seconds, environ=environ,
                         monotonic=monotonic, catalog=config.catalog)
