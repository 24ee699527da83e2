"""The running exporter: loads and reloads the config, ticks the sampler into the books, publishes a State.

One sampling loop feeds the books, independent of scrapes, so several
Prometheus replicas scraping the exporter never accrue cost twice. After every
tick and every reload a new frozen State is published by swapping one
reference; scrapes read only that (state.py).
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
from ml_cost_exporter.config.located import MAX_FILE_BYTES
from ml_cost_exporter.config.pod import load_pod_config
from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.cost.allocation import resolve_allocation
from ml_cost_exporter.cost.books import Books
from ml_cost_exporter.cost.ledger import GapOutcome
from ml_cost_exporter.cost.pricing import CostRates, price_allocation
from ml_cost_exporter.sampling import SAMPLED_COLLECTORS, Sampler, measure
from ml_cost_exporter.sources.discovery import discover_host, seen_gpus
from ml_cost_exporter.sources.host import DEFAULT_HOST_PATHS, HostPaths  # the CLI names them here
from ml_cost_exporter.state import ReloadStatus, State, StorageStatus
from ml_cost_exporter.storage.checkpoint import Checkpointer
from ml_cost_exporter.summary import gpu_warning, summary

log = logging.getLogger(__name__)
# Kubelet's crash-loop back-off tops out at 5 minutes; three of those still count as one pod life.
DEFAULT_MAX_GAP_SECONDS = 900.0


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
                 storage_path: str | None = None, max_gap_seconds: float = DEFAULT_MAX_GAP_SECONDS,
                 host: HostPaths = DEFAULT_HOST_PATHS) -> None:
        self.config_path = config_path
        self.pod_labels_file = pod_labels_file
        self.clocks = clocks
        self._cgroup_root = cgroup_root
        self._environ = environ
        self._lock = threading.RLock()  # one tick, reload or close at a time
        self.config: Config = load_pod_config(config_path, pod_labels_file)  # ConfigError: exit 2 at startup
        self._config_digest = self._digest()
        self._reload = ReloadStatus(True, clocks.wall())
        self._reload_requested = False
        self._wake = threading.Event()
        self._last_tick = clocks.wall()
        self.sampler = Sampler(self.config, enabled, clocks.monotonic, environ, server_fetch, host)
        if self.sampler.gpu_source is not None:
            self.sampler.sample_gpu()  # price the GPUs that are there from the first State on
        self.rates = self._price(self.config)
        self.books = Books(self.config, self.rates, self._last_tick)
        self.max_gap_seconds = max_gap_seconds
        self.state_restored = False
        self.state_gap_accrued_seconds = 0.0
        self.checkpointer = Checkpointer(Path(storage_path), clocks.wall) if storage_path else None
        if self.checkpointer is not None:
            for name, account in self.books.sections().items():
                self.checkpointer.register(name, account)
            self._restore()
        self._state = self._build_state(self._last_tick)
        self._summarize = True  # after the first tick, when processes and GPUs have been read

    def state(self) -> State:
        """The State published last; collectors call this once per scrape."""
        return self._state

    def _publish(self, now: float) -> None:
        self._state = self._build_state(now)  # one reference swap: a scrape sees the old State or the new

    def _build_state(self, now: float) -> State:
        storage = None
        if self.checkpointer is not None:
            storage = StorageStatus(self.state_restored, self.state_gap_accrued_seconds,
                                    self.checkpointer.write_failures_total,
                                    self.checkpointer.last_success_timestamp or 0.0)
        return State(now, self.config, self.rates, self.books.snapshot(now), self.sampler.last_gpu,
                     self.sampler.last_process, self.sampler.health(), self._reload, storage)

    # --- restart safety -------------------------------------------------------------
    def _restore(self) -> None:
        """Continue the counters of the last checkpoint and accrue the time the exporter was away."""
        outcome = self.checkpointer.restore()
        self.state_restored = "ledger" in outcome.restored
        if not self.state_restored:
            return
        gap = self.books.catch_up(self._last_tick, self.max_gap_seconds)
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

    # --- pricing and the config file ----------------------------------------------
    def _price(self, config: Config) -> CostRates:
        allocation = resolve_allocation(config, seen_gpus(self.sampler.last_good_gpu), discover_host(self._cgroup_root))
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

    # --- one tick -------------------------------------------------------------------
    def tick(self) -> None:
        """Sample every source once, accrue the time since the last tick, and publish the new State."""
        with self._lock:
            previous_gpus = self.sampler.gpu_signature()
            previous_sample = self.sampler.last_gpu
            readings = self.sampler.sample()
            now = self.clocks.wall()
            if self.sampler.gpu_signature() != previous_gpus:
                self.rates = self._price(self.config)  # GPUs appeared or went away: price what is there
                self.books.reprice(self.config, self.rates, now)
            self.books.record(measure(readings, previous_sample, self._last_tick, now, self.sampler.tenant_models))
            self._last_tick = now
            if self.checkpointer is not None:
                self.checkpointer.write()
            self._publish(now)
            if self._summarize:
                self._summarize = False
                self._log_summary()

    def _log_summary(self) -> None:
        """What is priced, once after start and after each reload (summary.py)."""
        for line in summary(self._state):
            log.info("%s", line)
        warning = gpu_warning(self._state, self._environ)
        if warning is not None:
            log.warning("%s", warning)

    # --- reload -----------------------------------------------------------------------
    def request_reload(self) -> None:
        """Ask the loop to reload the config (safe from a signal handler)."""
        self._reload_requested = True
        self._wake.set()

    def request_stop(self) -> None:
        """Stop waiting for slow sources and wake the loop (safe from a signal handler); `run` returns once
        its `stop` event is set."""
        self.sampler.stop_waiting()
        self._wake.set()

    def reload(self) -> bool:
        """Load the config file again; on any error keep the last good config."""
        try:
            config = load_pod_config(self.config_path, self.pod_labels_file)
        except ConfigError as exc:
            log.error("config reload failed, keeping the last good config: %s", exc)
            with self._lock:
                self._reload = ReloadStatus(False, self._reload.timestamp)
                self._publish(self._state.at)
            return False
        with self._lock:
            self.config = config
            self.sampler.reconfigure(config)
            now = self.clocks.wall()
            self.rates = self._price(config)
            self.books.reconfigure(config, self.rates, now)
            self._reload = ReloadStatus(True, now)
            self._publish(now)
            self._summarize = True
        log.info("config reloaded from %s", self.config_path)
        return True

    def check_config_changed(self) -> None:
        """Reload when the file changed; a file that is gone keeps the last good config, said once."""
        digest = self._digest()
        if digest is None and self._config_digest is not None:
            log.error("config file %s is gone or unreadable: keeping the last good config", self.config_path)
            self._config_digest = None
            with self._lock:
                self._reload = ReloadStatus(False, self._reload.timestamp)
                self._publish(self._state.at)
        elif digest is not None and digest != self._config_digest:
            self._config_digest = digest
            self.request_reload()

    # --- loop -----------------------------------------------------------------------
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
        with self._lock:
            if self.checkpointer is not None:
                now = self.clocks.wall()
                self.books.accrue_unmeasured(self._last_tick, now)
                self._last_tick = max(self._last_tick, now)
                self.checkpointer.write()
                self._publish(self._last_tick)
            self.sampler.close()
