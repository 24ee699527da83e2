"""The running exporter: live config, sources and ledger; samples on a timer and reloads on demand.

One sampling loop feeds the ledger, independent of scrapes, so several
Prometheus replicas scraping the exporter never accrue cost twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import MAX_FILE_BYTES
from ml_cost_exporter.config.schema import Config, load_config, with_pod_labels
from ml_cost_exporter.cost.energy import EnergyAccount
from ml_cost_exporter.cost.ledger import CostLedger, GapOutcome, Usage
from ml_cost_exporter.cost.pricing import CostRates, price_allocation
from ml_cost_exporter.cost.training import TrainingAccount
from ml_cost_exporter.economics import TokenAccounting
from ml_cost_exporter.sources.deadline import DeadlineWorker
from ml_cost_exporter.sources.discovery import read_pod_labels, resolve_allocation
from ml_cost_exporter.sources.energy import interval_energy_joules
from ml_cost_exporter.sources.gpus import GpuMismatch, make_gpu_source
from ml_cost_exporter.sources.nvml import GpuSample
from ml_cost_exporter.sources.processes import ProcessSample, ProcessSource
from ml_cost_exporter.sources.server import ServerReading, ServerSource
from ml_cost_exporter.storage.checkpoint import Checkpointer

log = logging.getLogger(__name__)
SAMPLED_COLLECTORS = ("gpu", "process", "server")
# Kubelet's crash-loop back-off tops out at 5 minutes; three of those still count as one pod life.
DEFAULT_MAX_GAP_SECONDS = 900.0
TOKEN_QUANTITIES = {"prompt_tokens": "prompt", "generation_tokens": "generation"}

NVML_DEADLINE_SECONDS = 2.0  # a lost GPU can block an NVML call for seconds; the tick waits no longer


def read_deadline(limit: float, interval: float) -> float:
    """How long a tick waits for a source's read: its own limit, and never more than half an interval."""
    return min(limit, interval / 2)


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
                 server_fetch: Callable[[str], str] | None = None, pod_labels_file: str | None = None,
                 storage_path: str | None = None, max_gap_seconds: float = DEFAULT_MAX_GAP_SECONDS) -> None:
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
        self.gpu_mismatch = GpuMismatch()
        self._process_gpus: tuple[str, ...] | None = None
        self.gpu_source = self._gpu_worker = None
        if "gpu" in enabled:
            self._start_gpu_source(self.config)
        self._server_workers: dict[str, tuple[ServerSource, DeadlineWorker[ServerReading]]] = {}
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
        window = self.config.collection.cost_window_seconds
        self.energy = EnergyAccount((m.key for m in self.config.models), self.config.energy, window)
        self.training = TrainingAccount(self.config.models, window)
        self.server_values: dict = {}  # the last current value of every quantity read, per model
        self.tokens = TokenAccounting(self.config, clocks.monotonic, server_fetch,  # phases, cache, tenants
                                      read_gateways="server" in enabled)
        self.max_gap_seconds = max_gap_seconds
        self.state_restored = False
        self.state_gap_accrued_seconds = 0.0
        self.checkpointer = Checkpointer(Path(storage_path), clocks.wall) if storage_path else None
        if self.checkpointer is not None:
            self.checkpointer.register("ledger", self.ledger)  # other stateful parts register here, before restore
            self.checkpointer.register("tokens", self.tokens.economics)
            self.checkpointer.register("tenants", self.tokens.tenants)
            self.checkpointer.register("energy", self.energy)
            self.checkpointer.register("training", self.training)
            self._restore()

    def _restore(self) -> None:
        """Continue the counters of the last checkpoint and accrue the time the exporter was away."""
        outcome = self.checkpointer.restore()
        self.state_restored = "ledger" in outcome.restored
        if not self.state_restored:
            return
        gap = self.ledger.catch_up(self._last_tick, self.max_gap_seconds)
        self._log_gap(gap)
        if gap.accrued:
            self.state_gap_accrued_seconds = gap.seconds
        self.checkpointer.write()

    def _log_gap(self, gap: GapOutcome) -> None:
        if gap.accrued:
            log.info("accrued %.1f s the exporter was down, at the allocation's price and the last known shares",
                     gap.seconds)
        elif gap.seconds < 0:
            log.warning("the checkpoint is %.1f s in the future (clock stepped back?): no gap accrued", -gap.seconds)
        elif gap.seconds > 0:
            log.warning("the exporter was down %.0f s, more than --storage.max-gap (%.0f s): that time is not "
                        "accrued", gap.seconds, self.max_gap_seconds)

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

    def _start_gpu_source(self, config: Config) -> None:
        """The configured GPU source, read by a worker of its own so a hung read never holds up a tick."""
        self.gpu_source = make_gpu_source(config, self._environ, self.clocks.monotonic)
        self._gpu_worker = DeadlineWorker("gpu", self.gpu_source.sample)

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
            with open(self.config_path, "rb") as handle:  # bounded: an oversized file is refused on load
                digest.update(handle.read(MAX_FILE_BYTES + 1))
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
        """The GPUs as NVML reads them within its deadline; None (and the last reading kept) when it hangs."""
        started = self.clocks.monotonic()
        deadline = read_deadline(NVML_DEADLINE_SECONDS, self.config.collection.interval_seconds)
        finished, samples = self._gpu_worker.read(deadline)
        sample = samples[-1] if finished and samples else None
        self.collector_status["gpu"] = CollectorStatus(sample is not None and sample.ok,
                                                       self.clocks.monotonic() - started)
        if sample is None:
            log.debug("gpu: NVML did not answer within %gs", deadline)
            return None  # the allocation stays as last seen: cost keeps accruing from it
        if not sample.ok:
            log.debug("gpu: %s", sample.error)
        self.last_gpu = sample
        environ = os.environ if self._environ is None else self._environ
        self.gpu_mismatch.check(self.config, sample, self.gpu_source, environ, self._process_gpus)
        return sample

    def tick(self) -> None:
        """Sample every source once and accrue the cost of the time since the last tick."""
        with self._tick_lock:
            previous_gpus = self._gpu_signature()
            previous_sample = self.last_gpu
            process = None
            if self.process_source is not None:
                process = self._timed("process", self.process_source.sample, lambda s: s.ok)
                self.last_process = process
                if self.gpu_source is not None and self.config.allocation.devices_from_processes:
                    self._process_gpus = self.process_source.gpu_devices()
                    self.gpu_source.set_visible(self._process_gpus)
            gpu = self._sample_gpu() if self.gpu_source is not None else None
            readings = self._sample_servers()
            gateway_readings = self._sample_gateways()
            now = self.clocks.wall()
            with self._lock:
                if self._gpu_signature() != previous_gpus:
                    self.rates = self._price(self.config)  # GPUs appeared or went away: price what is there
                    self.ledger.reconfigure(self.config, self.rates, now)
                usage = self._usage(self._last_tick, now, gpu, process, readings)
                interval = self.ledger.record(usage)
                self.tokens.account(interval, readings, gateway_readings, self.ledger)
                deltas, values = _server_quantities(readings)
                joules = interval_energy_joules(previous_sample, gpu, now - self._last_tick)
                epochs = {key: q["epochs"] for key, q in deltas.items() if "epochs" in q}
                self.energy.record(interval, joules, usage.requests, epochs)
                self.training.record(interval, deltas, values)
                self.server_values = values
            self._last_tick = now
            if self.checkpointer is not None:
                self.checkpointer.write()

    def _gpu_signature(self) -> tuple:
        if self.last_gpu is None or not self.last_gpu.ok:
            return ()
        return tuple((g.uuid, g.name) for g in self.last_gpu.gpus)

    def _server_worker(self, url: str, source: ServerSource) -> DeadlineWorker[ServerReading]:
        bound = self._server_workers.get(url)
        if bound is not None and bound[0] is source:
            return bound[1]
        if bound is not None:
            bound[1].close()  # a reload replaced the source; it carried the counter history over
        worker = DeadlineWorker(source.name, source.sample)
        self._server_workers[url] = (source, worker)
        return worker

    def _sample_servers(self) -> list[ServerReading]:
        """Every server read in parallel, each in its own worker, waiting for all up to one deadline."""
        for url in [u for u in self._server_workers if u not in self.servers]:
            self._server_workers.pop(url)[1].close()
        if not self.servers:
            return []
        started = self.clocks.monotonic()
        collection = self.config.collection
        deadline = started + read_deadline(collection.server_timeout_seconds, collection.interval_seconds)
        workers = [(source, self._server_worker(url, source)) for url, source in self.servers.items()]
        for _source, worker in workers:
            worker.start()
        readings: list[ServerReading] = []
        success = True
        for source, worker in workers:
            finished, results = worker.collect(deadline - self.clocks.monotonic())
            if not finished:
                log.debug("%s: no answer within the tick's deadline; its result counts when it comes", source.url)
            success = success and finished and all(r.ok for r in results)
            for reading in results:
                readings.append(reading)
                name = source.name
                self.dropped_series_total[name] = self.dropped_series_total.get(name, 0.0) + reading.dropped_series
                self.invalid_samples_total[name] = (self.invalid_samples_total.get(name, 0.0)
                                                    + reading.invalid_samples)
        self.collector_status["server"] = CollectorStatus(success, self.clocks.monotonic() - started)
        return readings

    def _sample_gateways(self) -> list:
        if not self.tokens.gateways:
            return []
        return self._timed("gateway", self.tokens.sample, lambda rs: all(r.ok for r in rs)) or []

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
        deltas, _values = _server_quantities(readings)
        counts = {name: {key: q[name] for key, q in deltas.items() if name in q}
                  for name in ("requests", "failed_requests", "compute_seconds")}
        # Token counts by kind; any other quantity is not priced here and never counted as something else.
        tokens = {(key, kind): q[quantity] for key, q in deltas.items()
                  for quantity, kind in TOKEN_QUANTITIES.items() if quantity in q}
        return Usage(start, end, utilization, power, cpu_cores, memory, requests=counts["requests"], tokens=tokens,
                     compute_seconds=counts["compute_seconds"], failed_requests=counts["failed_requests"])

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
            if self.gpu_source is not None and config.gpu != self.config.gpu:
                self._gpu_worker.close()  # another GPU source, or dcgm-exporter elsewhere
                self.gpu_source.close()
                self._start_gpu_source(config)
            self.config = config
            if self.gpu_source is not None:
                self.gpu_source.set_visible(config.allocation.visible_devices)
            if self.process_source is not None:
                self.process_source.set_selection(config.processes)
            self.servers = self._make_servers(config, self.servers)
            now = self.clocks.wall()
            self.rates = self._price(config)
            self.ledger.reconfigure(config, self.rates, now)
            self.tokens.reconfigure(config)
            window = config.collection.cost_window_seconds
            self.energy.reconfigure((m.key for m in config.models), config.energy, window)
            self.training.reconfigure(config.models, window)
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
        """Release the sources; with --storage.path, accrue up to now and write a last checkpoint."""
        if self.checkpointer is not None:
            with self._tick_lock:
                now = self.clocks.wall()
                with self._lock:
                    self.ledger.accrue_unmeasured(self._last_tick, now)
                self._last_tick = max(self._last_tick, now)
                self.checkpointer.write()
        if self._gpu_worker is not None:
            self._gpu_worker.close()
        for _source, worker in self._server_workers.values():
            worker.close()
        if self.gpu_source is not None:
            self.gpu_source.close()
        for source in self.servers.values():
            source.close()
        self.tokens.close()


def _server_quantities(readings: list[ServerReading]) -> tuple[dict, dict]:
    """Per-model increments and current values of every quantity, summed over the servers read."""
    deltas: dict = {}
    values: dict = {}
    for reading in readings:
        for target, source in ((deltas, reading.deltas), (values, reading.values)):
            for key, quantities in source.items():
                merged = target.setdefault(key, {})
                for quantity, amount in quantities.items():
                    merged[quantity] = merged.get(quantity, 0.0) + amount
    return deltas, values
