"""The frozen State a scrape reads: everything the exporter knows, as of one tick or reload.

The runtime builds a new State after every tick and every reload and publishes
it by swapping one reference, so a scrape reads one consistent State and never
a config from one moment beside books from another.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_cost_exporter.config.schema import Config
from ml_cost_exporter.cost.books import BooksSnapshot
from ml_cost_exporter.cost.pricing import CostRates
from ml_cost_exporter.sampling import SamplingHealth
from ml_cost_exporter.sources.nvml import GpuSample
from ml_cost_exporter.sources.processes import ProcessSample


@dataclass(frozen=True)
class ReloadStatus:
    successful: bool  # the last reload kept the previous config when False
    timestamp: float  # of the last successful load, Unix seconds


@dataclass(frozen=True)
class StorageStatus:
    """The checkpoint's health, with --storage.path."""

    restored: bool
    gap_accrued_seconds: float
    write_failures_total: float
    last_success_timestamp: float  # 0: none yet


@dataclass(frozen=True)
class State:
    at: float  # wall time the books were read, Unix seconds
    config: Config
    rates: CostRates
    books: BooksSnapshot
    gpu: GpuSample | None  # the last GPU reading, kept while the source does not answer
    process: ProcessSample | None
    sampling: SamplingHealth
    reload: ReloadStatus
    storage: StorageStatus | None
