"""The running exporter: live config, sources and ledger; samples on a timer and reloads on demand.

One sampling loop feeds the ledger, independent of scrapes, so several
Prometheus replicas scraping the exporter never accrue cost twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import Config, load_config, with_pod_labels
from ml_cost_exporter.cost.ledger import CostLedger, Usage
from ml_cost_exporter.cost.pricing import CostRates, price_allocation
from ml_cost_exporter.sources.discovery import read_pod_labels, resolve_allocation
from ml_cost_exporter.sources.nvml import GpuSample, NvmlGpuSource
from ml_cost_exporter.sources.processes import ProcessSample, ProcessSource
from ml_cost_exporter.sources.server import ServerReading, ServerSource

log = logging.getLogger(__name__)
SAMPLED_COLLECTORS = ("gpu", "process", "server")


@dataclass(frozen=True)
class CollectorStatus:
    success: bool
    duration_seconds: float


@dataclass(frozen=True)
class Clocks:
    """Wall time prices and budget periods; monotonic time measures durations and backoff."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


class Runtime:
    def __init__(self, config_path: str | None, enabled: frozenset[str] = frozenset(SAMPLED_COLLECTORS),
                 clocks: Clocks = Clocks(), environ: Mapping[str, str] | None = None,
                 cgroup_root: Path = Path("/sys/fs/cgroup"),
                 server_fetch: Callable[[str], str] | None = None, pod_labels_file: str | None = None) -> None:
        self.config_path = config_path
        self.pod_labels_file = pod_labels_file
        self.enabled = enabled
        self.clocks = clocks
        self._environ = environ
        self._cgroup_root = cgroup_root
        self._server_fetch = server_fetch
        self._lock = threading.RLock()
        self.config: Config = self._load()  # ConfigError propagates: exit 2 at startup
        self._config_digest = self._digest()
        self.gpu_source = self._make_gpu_source(self.config) if "gpu" in enabled else None
        self.process_source = ProcessSource(self.config.processes) if "process" in enabled else None
        self.servers: dict[str, ServerSource] = self._make_servers(self.config, {})
        self.last_gpu: GpuSample | None = None
        self.last_process: ProcessSample | None = None
        self.collector_status: dict[str, CollectorStatus] = {}
        self.dropped_series_total: dict[str, float] = {}
        self.invalid_samples_total: dict[str, float] = {}
        self.reload_successful = True
        self.reload_success_timestamp = clocks.wall()
        self._tick_lock = threading.Lock()
        self._last_tick = clocks.wall()
        self._wake = threading.Event()
        self._reload_requested = False
        if self.gpu_source is not None:
            self._sample_gpu()
        self.rates = self._price(self.config)
        self.ledger = CostLedger(self.config, self.rates, self._last_tick)

    # --- construction helpers -------------------------------------------------
    def _load(self) -> Config:
        config = load_config(self.config_path)
        if self.pod_labels_file is None:
            return config
        try:
            labels = read_pod_labels(Path(self.pod_labels_file))
        except OSError as exc:
            reason = exc.strerror or exc
            raise ConfigError(self.pod_labels_file, None, "", f"cannot read pod labels: {reason}") from None
        return with_pod_labels(config, labels)

    def _make_gpu_source(self, config: Config) -> NvmlGpuSource:
        return NvmlGpuSource(config.allocation.visible_devices, environ=self._environ,
                             monotonic=self.clocks.monotonic)

    def _make_servers(self, config: Config, previous: dict[str, ServerSource]) -> dict[str, ServerSource]:
        if "server" not in self.enabled:
            return {}
        by_url: dict[str, list] = {}
        for model in config.models:
            if model.server is not None:
                by_url.setdefault(model.server.url, []).append(model)
        servers = {}
        collection = config.collection
        for url, models in by_url.items():
            source = ServerSource(url, models, collection.server_timeout_seconds, collection.max_body_bytes,
                                  collection.max_series_per_source, collection.interval_seconds,
                                  monotonic=self.clocks.monotonic, fetch=self._server_fetch)
            old = previous.get(url)
            if old is not None and old.same_bindings(source):
                source.adopt_state(old)
            servers[url] = source
        for url, old in previous.items():
            if servers.get(url) is not old:
                old.close()
        return servers

    def _price(self, config: Config) -> CostRates:
        allocation = resolve_allocation(config, self.last_gpu, self._cgroup_root)
        return price_allocation(config, allocation)

    def _digest(self) -> str | None:
        """Fingerprint of the config file and the catalog overlay it names, so editing either reloads."""
        if self.config_path is None:
            return None
        digest = hashlib.sha256()
        try:
            digest.update(Path(self.config_path).read_bytes())
        except OSError:
            return None
        overlay = self.config.pricing.catalog_file
        if overlay is not None:
            try:
                digest.update((Path(self.config_path).parent / overlay).read_bytes())
            except OSError:
                digest.update(b"\0unreadable")
        return digest.hexdigest()

    # --- sampling -------------------------------------------------------------
    def _timed(self, name: str, sample: Callable[[], object], ok: Callable[[object], bool]) -> object:
        started = self.clocks.monotonic()
        try:
            result = sample()
            success = ok(result)
        except Exception:  # a collector bug must never stop the loop
            log.exception("collector %s failed", name)
            result, success = None, False
        self.collector_status[name] = CollectorStatus(success, self.clocks.monotonic() - started)
        return result

    def _sample_gpu(self) -> GpuSample | None:
        sample = self._timed("gpu", self.gpu_source.sample, lambda s: s.ok)
        if sample is not None and not sample.ok:
            log.debug("gpu: %s", sample.error)
        self.last_gpu = sample
        return sample

    def tick(self) -> None:
        """Sample every source once and accrue the cost of the time since the last tick."""
        with self._tick_lock:
            previous_gpus = self._gpu_signature()
            process = None
            if self.process_source is not None:
                process = self._timed("process", self.process_source.sample, lambda s: s.ok)
                self.last_process = process
                if self.gpu_source is not None and self.config.allocation.devices_from_processes:
                    self.gpu_source.set_visible(self.process_source.gpu_devices())
            gpu = self._sample_gpu() if self.gpu_source is not None else None
            readings = self._sample_servers()
            now = self.clocks.wall()
            with self._lock:
                if self._gpu_signature() != previous_gpus:
                    self.rates = self._price(self.config)  # GPUs appeared or went away: price what is there
                    self.ledger.reconfigure(self.config, self.rates, now)
                usage = self._usage(self._last_tick, now, gpu, process, readings)
                self.ledger.record(usage)
            self._last_tick = now

    def _gpu_signature(self) -> tuple:
        if self.last_gpu is None or not self.last_gpu.ok:
            return ()
        return tuple((g.uuid, g.name) for g in self.last_gpu.gpus)

    def _sample_servers(self) -> list[ServerReading]:
        if not self.servers:
            return []
        readings: list[ServerReading] = []

        def sample_all() -> list[ServerReading]:
            for source in self.servers.values():
                reading = source.sample()
                readings.append(reading)
                name = source.name
                self.dropped_series_total[name] = self.dropped_series_total.get(name, 0.0) + reading.dropped_series
                self.invalid_samples_total[name] = (self.invalid_samples_total.get(name, 0.0)
                                                    + reading.invalid_samples)
            return readings

        self._timed("server", sample_all, lambda rs: all(r.ok for r in rs))
        return readings

    def _usage(self, start: float, end: float, gpu: GpuSample | None, process: ProcessSample | None,
               readings: list[ServerReading]) -> Usage:
        utilization = power = None
        if gpu is not None and gpu.ok:
            measured = [g.utilization for g in gpu.gpus if g.utilization is not None]
            utilization = sum(measured) / len(measured) if measured else None
            watts = [g.power_watts for g in gpu.gpus if g.power_watts is not None]
            power = sum(watts) if watts else None
        cpu_cores = memory = None
        if process is not None and process.ok and end > start:
            cpu_cores = process.cpu_seconds_delta / (end - start)
            memory = process.resident_memory_bytes
        requests: dict = {}
        tokens: dict = {}
        compute: dict = {}
        for reading in readings:
            for key, quantities in reading.deltas.items():
                for quantity, delta in quantities.items():
                    if quantity == "requests":
                        requests[key] = requests.get(key, 0.0) + delta
                    elif quantity == "compute_seconds":
                        compute[key] = compute.get(key, 0.0) + delta
                    else:
                        kind = "prompt" if quantity == "prompt_tokens" else "generation"
                        tokens[(key, kind)] = tokens.get((key, kind), 0.0) + delta
        return Usage(start, end, utilization, power, cpu_cores, memory, requests, tokens, compute)

    # --- reload ---------------------------------------------------------------
    def request_reload(self) -> None:
        """Ask the loop to reload the config (safe from a signal handler)."""
        self._reload_requested = True
        self._wake.set()

    def reload(self) -> bool:
        """Load the config file again; on any error keep the last good config."""
        try:
            config = self._load()
        except ConfigError as exc:
            log.error("config reload failed, keeping the last good config: %s", exc)
            self.reload_successful = False
            return False
        with self._lock:
            self.config = config
            if self.gpu_source is not None:
                self.gpu_source.set_visible(config.allocation.visible_devices)
            if self.process_source is not None:
                self.process_source.set_selection(config.processes)
            self.servers = self._make_servers(config, self.servers)
            now = self.clocks.wall()
            self.rates = self._price(config)
            self.ledger.reconfigure(config, self.rates, now)
            self.reload_successful = True
            self.reload_success_timestamp = now
        log.info("config reloaded from %s", self.config_path)
        return True

    def check_config_changed(self) -> None:
        digest = self._digest()
        if digest is not None and digest != self._config_digest:
            self._config_digest = digest
            self.request_reload()

    # --- loop -----------------------------------------------------------------
    def run(self, stop: threading.Event, watch_interval: float = 2.0) -> None:
        """Tick every collection interval until `stop` is set; reload when asked or the file changes."""
        next_tick = self.clocks.monotonic()
        next_watch = next_tick
        while not stop.is_set():
            now = self.clocks.monotonic()
            if self._reload_requested:
                self._reload_requested = False
                self._config_digest = self._digest()
                self.reload()
            if now >= next_watch and self.config_path is not None:
                self.check_config_changed()
                next_watch = now + watch_interval
            if now >= next_tick:
                try:
                    self.tick()
                except Exception:
                    log.exception("sampling failed")
                next_tick = now + self.config.collection.interval_seconds
            wait = min(next_tick, next_watch if self.config_path else next_tick) - self.clocks.monotonic()
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()

    def close(self) -> None:
        if self.gpu_source is not None:
            self.gpu_source.close()
        for source in self.servers.values():
            source.close()
