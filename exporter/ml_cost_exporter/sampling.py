"""Sampling: every source of the pod read once a tick, each in its own worker, within one deadline.

A GPU that hangs, a server that trickles or a gateway that never answers holds
only its own worker: the tick waits for it up to the deadline and goes on with
what the others returned (a late answer counts at the next tick, so counters
lose nothing). What a tick read becomes a `Measurement` the books can record.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.cost.books import Measurement, sum_quantities
from ml_cost_exporter.sources.deadline import DeadlineWorker
from ml_cost_exporter.sources.energy import interval_energy_joules
from ml_cost_exporter.sources.gateway import GatewayReading, GatewaySource
from ml_cost_exporter.sources.gpu_registry import GpuSource, make_gpu_source
from ml_cost_exporter.sources.gpus import GpuMismatch
from ml_cost_exporter.sources.host import DEFAULT_HOST_PATHS, HostPaths
from ml_cost_exporter.sources.network import EgressReading, EgressSource
from ml_cost_exporter.sources.nvml import GpuSample
from ml_cost_exporter.sources.plausible import Plausibility, plausibility_of
from ml_cost_exporter.sources.processes import ProcessSample, ProcessSource
from ml_cost_exporter.sources.server import ServerReading, ServerSource
from ml_cost_exporter.sources.volumes import VolumeReading, VolumeSource

log = logging.getLogger(__name__)
SAMPLED_COLLECTORS = ("gpu", "process", "server", "storage", "network")
NVML_DEADLINE_SECONDS = 2.0  # a lost GPU can block an NVML call for seconds; the tick waits no longer


def read_deadline(limit: float, interval: float) -> float:
    """How long a tick waits for a source's read: its own limit, and never more than half an interval."""
    return min(limit, interval / 2)


@dataclass(frozen=True)
class StepStatus:
    """How one step of a tick or a scrape went: `mlcost_exporter_collector_success` and `_duration_seconds`."""

    success: bool
    duration_seconds: float


@dataclass(frozen=True)
class SourceHealth:
    """One source at its last read: up or not, and what it refused."""

    up: bool
    dropped_series_total: float | None = None  # None: the source parses no text
    invalid_samples_total: float | None = None
    rejected_total: Mapping[str, float] = field(default_factory=dict)  # refused samples by reason


@dataclass(frozen=True)
class SamplingHealth:
    steps: Mapping[str, StepStatus]  # by collector: gpu, process, server, gateway
    sources: Mapping[str, SourceHealth]  # by source name, in a stable order
    gpu_source: str | None
    gpu_mismatch: bool


@dataclass(frozen=True)
class Readings:
    """What one tick read; None or empty where a source is off or did not answer in time."""

    gpu: GpuSample | None = None
    process: ProcessSample | None = None
    servers: tuple[ServerReading, ...] = ()
    gateways: tuple[GatewayReading, ...] = ()
    volumes: VolumeReading | None = None
    egress: EgressReading | None = None


@dataclass
class _Pool:
    """Sources of one kind keyed by URL, each with the worker that reads it."""

    sources: dict[str, object] = field(default_factory=dict)
    workers: dict[str, DeadlineWorker] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)
    invalid: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, dict[str, float]] = field(default_factory=dict)

    def replace(self, sources: dict[str, object]) -> None:
        """Adopt new sources; a source kept from before keeps its worker, a replaced one gets a new one."""
        for url, worker in list(self.workers.items()):
            if sources.get(url) is not self.sources.get(url):
                worker.close()
                del self.workers[url]
        for url, old in self.sources.items():
            if sources.get(url) is not old:
                old.close()
        self.sources = sources
        for url, source in sources.items():
            if url not in self.workers:
                self.workers[url] = DeadlineWorker(source.name, source.sample)

    def read(self, deadline: float, monotonic: Callable[[], float]) -> tuple[bool, list]:
        """Every source read in parallel, waiting for all up to one deadline (monotonic seconds)."""
        for worker in self.workers.values():
            worker.start()
        readings, success = [], True
        for url, worker in self.workers.items():
            finished, results = worker.collect(deadline - monotonic())
            if not finished:
                log.debug("%s: no answer within the tick's deadline; its result counts when it comes", url)
            success = success and finished and all(r.ok for r in results)
            name = self.sources[url].name
            for reading in results:
                readings.append(reading)
                self.dropped[name] = self.dropped.get(name, 0.0) + reading.dropped_series
                self.invalid[name] = self.invalid.get(name, 0.0) + reading.invalid_samples
                totals = self.rejected.setdefault(name, {})
                for reason, count in reading.rejected.items():
                    totals[reason] = totals.get(reason, 0.0) + count
        return success, readings

    def health(self) -> dict[str, SourceHealth]:
        return {s.name: SourceHealth(s.last_reading.ok, self.dropped.get(s.name, 0.0), self.invalid.get(s.name, 0.0),
                                     dict(self.rejected.get(s.name, {})))
                for s in self.sources.values()}

    def close(self) -> None:
        self.replace({})


class Sampler:
    """The pod's sources, kept in step with the config, read once a tick."""

    def __init__(self, config: Config, enabled: frozenset[str], monotonic: Callable[[], float],
                 environ: Mapping[str, str] | None = None, fetch: Callable[[str], str] | None = None,
                 host: HostPaths = DEFAULT_HOST_PATHS) -> None:
        self._enabled = enabled
        self._host = host
        self.volume_source: VolumeSource | None = None
        self._volume_worker: DeadlineWorker | None = None
        self.egress_source = EgressSource(host.sysfs, host.procfs, monotonic) if "network" in enabled else None
        self._monotonic = monotonic
        self._environ = environ
        self._fetch = fetch
        self._config = config
        self._steps: dict[str, StepStatus] = {}
        self.gpu_mismatch = GpuMismatch()
        self._process_gpus: tuple[str, ...] | None = None
        self.gpu_source: GpuSource | None = None
        self._gpu_worker: DeadlineWorker | None = None
        self.last_gpu: GpuSample | None = None
        self.last_good_gpu: GpuSample | None = None  # prices the GPUs while the source fails
        self.last_process: ProcessSample | None = None
        self.process_source = ProcessSource(config.processes) if "process" in enabled else None
        self._servers = _Pool()
        self._gateways = _Pool()
        self.reconfigure(config)

    @property
    def gateway_sources(self) -> Mapping[str, GatewaySource]:
        return self._gateways.sources

    @property
    def tenant_models(self) -> frozenset:
        """Models whose cost the configured gateways' tenants share."""
        return frozenset().union(*(s.covered for s in self._gateways.sources.values()))

    # --- configuration --------------------------------------------------------
    def reconfigure(self, config: Config) -> None:
        """Adopt a new config: sources that did not change keep their counter history and worker."""
        previous, self._config = self._config, config
        if "gpu" in self._enabled:
            if self.gpu_source is None or config.gpu != previous.gpu:
                self._start_gpu_source(config)
            self.gpu_source.set_visible(config.allocation.visible_devices)
        if self.process_source is not None:
            self.process_source.set_selection(config.processes)
        self._servers.replace(self._server_sources(config) if "server" in self._enabled else {})
        self._gateways.replace(self._gateway_sources(config) if "server" in self._enabled else {})
        self._start_volume_source(config, previous)

    def _start_volume_source(self, config: Config, previous: Config) -> None:
        """The volumes whose size is read, in a worker of their own (a hung network filesystem holds only it)."""
        if self.volume_source is not None and config.volumes == previous.volumes:
            return
        if self._volume_worker is not None:
            self._volume_worker.close()
            self.volume_source = self._volume_worker = None
        if "storage" in self._enabled and any(v.path for v in config.volumes):
            self.volume_source = VolumeSource(config.volumes, self._host.root, self._host.statfs)
            self._volume_worker = DeadlineWorker("volumes", self.volume_source.sample)

    def _start_gpu_source(self, config: Config) -> None:
        """The configured GPU source, read by a worker of its own so a hung read never holds up a tick."""
        if self._gpu_worker is not None:
            self._gpu_worker.close()  # another GPU source, or dcgm-exporter elsewhere
            self.gpu_source.close()
        self.gpu_source = make_gpu_source(config, self._environ, self._monotonic)
        self._gpu_worker = DeadlineWorker("gpu", self.gpu_source.sample)

    def _server_sources(self, config: Config) -> dict[str, object]:
        by_url: dict[str, list] = {}
        for model in config.models:
            if model.server is not None:
                by_url.setdefault(model.server.url, []).append(model)
        collection = config.collection
        sources = {}
        for url, models in by_url.items():
            source = ServerSource(url, models, collection.server_timeout_seconds, collection.max_body_bytes,
                                  collection.max_series_per_source, collection.interval_seconds,
                                  monotonic=self._monotonic, fetch=self._fetch, plausibility=_limits(config))
            old = self._servers.sources.get(url)
            if old is not None and old.same_bindings(source):
                source.adopt_state(old)  # same counters read the same way: their history carries over
            sources[url] = source
        return sources

    def _gateway_sources(self, config: Config) -> dict[str, object]:
        collection = config.collection
        sources = {}
        for gateway in config.tenants.gateways if config.tenants else ():
            source = GatewaySource(gateway, collection.server_timeout_seconds, collection.max_body_bytes,
                                   collection.max_series_per_source, collection.interval_seconds,
                                   monotonic=self._monotonic, fetch=self._fetch, plausibility=_limits(config))
            old = self._gateways.sources.get(gateway.url)
            if old is not None:
                source.adopt_state(old)  # keeps the history only where the gateway is unchanged
            sources[gateway.url] = source
        return sources

    # --- one tick ---------------------------------------------------------------
    def sample(self) -> Readings:
        """Read every enabled source once; each waits at most its share of the tick."""
        process = self._sample_process() if self.process_source is not None else None
        gpu = self.sample_gpu() if self.gpu_source is not None else None
        collection = self._config.collection
        deadline = self._monotonic() + read_deadline(collection.server_timeout_seconds, collection.interval_seconds)
        servers = self._read_pool("server", self._servers, deadline)
        gateways = self._read_pool("gateway", self._gateways, deadline)
        volumes, egress = self._sample_bill(deadline)
        return Readings(gpu, process, tuple(servers), tuple(gateways), volumes, egress)

    def _sample_bill(self, deadline: float) -> tuple[VolumeReading | None, EgressReading | None]:
        """The volumes' sizes (within the tick's deadline) and the bytes sent since the last tick."""
        volumes = egress = None
        if self._volume_worker is not None:
            started = self._monotonic()
            finished, results = self._volume_worker.read(deadline - started)
            volumes = results[-1] if results else None
            self._steps["storage"] = StepStatus(finished and volumes is not None and volumes.ok,
                                                self._monotonic() - started)
        if self.egress_source is not None:
            started = self._monotonic()
            egress = self.egress_source.sample()
            self._steps["network"] = StepStatus(egress.ok and not egress.failures, self._monotonic() - started)
        return volumes, egress

    def _read_pool(self, step: str, pool: _Pool, deadline: float) -> list:
        if not pool.sources:
            return []
        started = self._monotonic()
        success, readings = pool.read(deadline, self._monotonic)
        self._steps[step] = StepStatus(success, self._monotonic() - started)
        return readings

    def _sample_process(self) -> ProcessSample | None:
        started = self._monotonic()
        try:
            sample = self.process_source.sample()
        except Exception:  # a collector bug must never stop the loop
            log.exception("collector process failed")
            sample = None
        self._steps["process"] = StepStatus(sample is not None and sample.ok, self._monotonic() - started)
        self.last_process = sample
        if self.gpu_source is not None and self._config.allocation.devices_from_processes:
            self._process_gpus = self.process_source.gpu_devices()
            self.gpu_source.set_visible(self._process_gpus)
        return sample

    def sample_gpu(self) -> GpuSample | None:
        """The GPUs as the source reads them within its deadline; None (and the last reading kept) when it hangs."""
        started = self._monotonic()
        deadline = read_deadline(NVML_DEADLINE_SECONDS, self._config.collection.interval_seconds)
        finished, samples = self._gpu_worker.read(deadline)
        sample = samples[-1] if finished and samples else None
        self._steps["gpu"] = StepStatus(sample is not None and sample.ok, self._monotonic() - started)
        if sample is None:
            log.debug("gpu: the %s source did not answer within %gs", self.gpu_source.name, deadline)
            return None  # the allocation stays as last seen: cost keeps accruing from it
        if not sample.ok:
            log.debug("gpu: %s", sample.error)
        self.last_gpu = sample
        if sample.ok:
            self.last_good_gpu = sample
        environ = os.environ if self._environ is None else self._environ
        self.gpu_mismatch.check(self._config, sample, self.gpu_source, environ, self._process_gpus)
        return sample

    def gpu_signature(self) -> tuple:
        """The GPUs last read successfully, by identity: a change reprices the allocation.

        A failing read changes nothing: a GPU that was priced stays priced while its source is down.
        """
        if self.last_good_gpu is None:
            return ()
        return tuple((g.uuid, g.name) for g in self.last_good_gpu.gpus)

    # --- health and shutdown ------------------------------------------------------
    def health(self) -> SamplingHealth:
        sources: dict[str, SourceHealth] = {}
        gpu = self.gpu_source
        if gpu is not None:
            counts = gpu.parse_counts()
            dropped, invalid = counts if counts is not None else (None, None)
            sources[gpu.name] = SourceHealth(self.last_gpu is not None and self.last_gpu.ok, dropped, invalid)
        if self.process_source is not None:
            sources["psutil"] = SourceHealth(self.last_process is not None and self.last_process.ok)
        sources.update(self._servers.health())
        sources.update(self._gateways.health())
        sources.update(self._bill_health())
        return SamplingHealth(dict(self._steps), sources, gpu.name if gpu is not None else None,
                              self.gpu_mismatch.active)

    def stop_waiting(self) -> None:
        """From now on no read is waited for: a stopping exporter accrues and checkpoints at once.

        Safe from a signal handler: it only sets flags and wakes the waits.
        """
        singles = (self._gpu_worker, self._volume_worker)
        for worker in (*self._servers.workers.values(), *self._gateways.workers.values(), *singles):
            if worker is not None:
                worker.interrupt()

    def _bill_health(self) -> dict[str, SourceHealth]:
        sources = {}
        if self.volume_source is not None:
            sources["volumes"] = SourceHealth(self.volume_source.last_reading.ok)
        if self.egress_source is not None:
            sources["network"] = SourceHealth(self.egress_source.last_reading.ok)
        return sources

    def close(self) -> None:
        if self._volume_worker is not None:
            self._volume_worker.close()
        if self._gpu_worker is not None:
            self._gpu_worker.close()
            self.gpu_source.close()
        self._servers.close()
        self._gateways.close()


def _limits(config: Config) -> Plausibility:
    collection = config.collection
    return plausibility_of(collection.max_counter_value, collection.max_increase_per_second)


def measure(readings: Readings, previous_gpu: GpuSample | None, start: float, end: float,
            tenant_models: frozenset) -> Measurement:
    """The books' view of one tick's readings over [start, end)."""
    utilization = power = None
    gpu = readings.gpu
    if gpu is not None and gpu.ok:
        measured = [g.utilization for g in gpu.gpus if g.utilization is not None]
        utilization = sum(measured) / len(measured) if measured else None
        watts = [g.power_watts for g in gpu.gpus if g.power_watts is not None]
        power = sum(watts) if watts else None
    cpu_cores = memory = None
    process = readings.process
    if process is not None and process.ok and end > start:
        cpu_cores = process.cpu_seconds_delta / (end - start)
        memory = process.resident_memory_bytes
    return Measurement(
        start, end, utilization, power, interval_energy_joules(previous_gpu, gpu, end - start), cpu_cores, memory,
        deltas=sum_quantities(r.deltas for r in readings.servers),
        values=sum_quantities(r.values for r in readings.servers),
        tenant_tokens=_tenant_tokens(readings.gateways), tenant_models=tenant_models, **bill_fields(readings))


def bill_fields(readings: Readings) -> dict:
    """The Measurement's storage and egress fields: sizes read, bytes sent, and what could not be measured."""
    fields: dict = {}
    unpriced: list[tuple[str, str]] = []
    if readings.volumes is not None:
        fields["volume_sizes_bytes"] = readings.volumes.sizes_bytes
        unpriced += [(f"volume:{name}", reason) for name, reason in readings.volumes.failures]
    egress = readings.egress
    if egress is not None and egress.ok:
        fields["egress_bytes"] = egress.bytes_sent
        unpriced += [(f"network:{name}", reason) for name, reason in egress.failures]
    elif egress is not None:
        unpriced.append(("network", "unreadable"))
    fields["unpriced"] = tuple(unpriced)
    hosted: dict[str, float] = {}
    for reading in readings.gateways:
        for model, usd in reading.hosted_usd.items():
            hosted[model] = hosted.get(model, 0.0) + usd
    fields["hosted_usd"] = hosted
    return fields


def _tenant_tokens(readings: Iterable[GatewayReading]) -> dict:
    tokens: dict = {}
    for reading in readings:
        for slot, value in reading.tokens.items():
            tokens[slot] = tokens.get(slot, 0.0) + value
    return tokens
