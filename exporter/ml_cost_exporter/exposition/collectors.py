"""The scrape: one registry collector reads one published State and builds fresh families from it.

Every family builder gets the same State, so a scrape is consistent by
construction (no builder can see a config from one moment and books from
another). Each builder is wrapped: an exception drops only its own families
and is reported through mlcost_exporter_collector_success.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ml_cost_exporter import __version__
from ml_cost_exporter.cost.ledger import IDLE_RESOURCES
from ml_cost_exporter.exposition.bill import bill_families
from ml_cost_exporter.exposition.energy import energy_families
from ml_cost_exporter.exposition.families import family
from ml_cost_exporter.exposition.tokens import token_families
from ml_cost_exporter.exposition.training import quality_families, training_families
from ml_cost_exporter.sampling import StepStatus
from ml_cost_exporter.state import State

log = logging.getLogger(__name__)
GPU_LABELS = ["gpu", "uuid", "gpu_name", "mig_gpu_instance", "mig_compute_instance"]


def cost_families(state: State) -> Iterator[Metric]:
    """The cost contract: per-model cost, cost per 1k, requests and tokens, allocation, budgets."""
    snapshot = state.books.ledger
    config = state.config
    model, usd = ["model", "version"], ["model", "version", "workload", "resource"]
    yield family(GaugeMetricFamily, "inference_cost_per_1k_usd",
                 "Accrued cost per 1,000 successful requests over the rolling cost window, in USD; "
                 "absent while the window has no requests.", model, snapshot.cost_per_1k_usd)
    yield family(CounterMetricFamily, "mlcost_usd", "Accrued cost in USD, attributed to the model.", usd,
                 snapshot.usd_total)
    yield family(GaugeMetricFamily, "mlcost_hourly_usd", "Current cost rate in USD per hour, attributed to the model.",
                 usd, snapshot.hourly_usd)
    yield family(CounterMetricFamily, "mlcost_idle_usd",
                 "Part of mlcost_usd_total accrued while the allocated resource was idle, in USD (a subset, "
                 "never additional).", ["model", "version", "resource"],
                 {k: v for k, v in snapshot.idle_usd_total.items() if k[2] in IDLE_RESOURCES})
    yield family(CounterMetricFamily, "mlcost_requests", "Successful requests served, from the inference server.",
                 model, snapshot.requests_total)
    yield family(CounterMetricFamily, "mlcost_failed_requests",
                 "Failed, aborted or errored requests, from the inference server where it reports them; they take "
                 "a share of cost under attribution: requests but are not in cost per 1k's denominator.", model,
                 snapshot.failed_requests_total)
    yield family(CounterMetricFamily, "mlcost_cache_savings_usd",
                 "What the requests a response cache answered would have cost at the model's measured cost per "
                 "request that did model work, USD (a saving, never part of cost).", model,
                 state.books.cache.savings_usd_total)
    yield family(CounterMetricFamily, "mlcost_tokens", "Tokens processed, from the inference server.",
                 ["model", "version", "kind"], snapshot.tokens_total)

    target = GaugeMetricFamily("mlcost_target_cost_per_1k_usd", "Configured target cost per 1,000 requests, USD.",
                               labels=["model", "version"])
    extra_labels = sorted({k for m in config.models for k in m.labels})
    info = GaugeMetricFamily("mlcost_model_info", "Attribution labels of each model (always 1).",
                             labels=["model", "version", "workload", *extra_labels])
    for model in config.models:
        if model.target_cost_per_1k_usd is not None:
            target.add_metric([model.name, model.version], model.target_cost_per_1k_usd)
        info.add_metric([model.name, model.version, model.workload,
                         *(model.labels.get(k, "") for k in extra_labels)], 1)
    yield target
    yield info

    allocation = state.rates.allocation
    yield GaugeMetricFamily("mlcost_allocated_gpus", "GPUs priced for this pod (a MIG slice counts as its "
                            "fraction of the GPU).", value=allocation.gpus)
    yield GaugeMetricFamily("mlcost_allocated_cpu_cores", "vCPUs priced for this pod.", value=allocation.vcpus)
    yield GaugeMetricFamily("mlcost_allocated_memory_bytes", "Memory priced for this pod, in bytes.",
                            value=allocation.memory_gib * 1024**3)
    found = "config" if config.allocation.gpu is not None or config.allocation.instance_type else (
        state.sampling.gpu_source or "none")
    yield family(GaugeMetricFamily, "mlcost_exporter_allocation_source_info",
                 "Where each figure of the priced allocation came from (always 1): config, the GPU source that "
                 "found the GPUs, the cgroup limit, the host total, or the GPU's share of its reference instance.",
                 ["resource", "source"], {("gpu", found): 1.0, ("cpu", allocation.vcpus_from): 1.0,
                                          ("memory", allocation.memory_from): 1.0})
    pricing = GaugeMetricFamily("mlcost_pricing_info", "How this pod is priced (always 1).",
                                labels=["provider", "purchase_option", "gpu_type", "instance_type"])
    pricing.add_metric([config.pricing.provider, config.pricing.purchase_option,
                        allocation.gpu_type.id if allocation.gpu_type else "",
                        config.allocation.instance_type or ""], 1)
    yield pricing

    yield from _budget_families(state)
    yield from bill_families(state)

def _budget_families(state: State) -> Iterator[Metric]:
    snapshot = state.books.ledger
    config = state.config
    spend = CounterMetricFamily(
        "mlcost_budget_spend_usd",
        "This pod's spend counted against the budget within the period named by the period label, USD.",
        labels=["budget", "period"])
    for labels, value in sorted(snapshot.budget_spend_usd.items()):
        spend.add_metric(list(labels), value)
    yield spend
    limit = GaugeMetricFamily("mlcost_budget_limit_usd", "Budget amount for one period, USD.", labels=["budget"])
    start = GaugeMetricFamily("mlcost_budget_period_start_timestamp_seconds",
                              "Start of the budget's current period (UTC), Unix seconds.", labels=["budget"])
    end = GaugeMetricFamily("mlcost_budget_period_end_timestamp_seconds",
                            "End of the budget's current period (UTC), Unix seconds.", labels=["budget"])
    thresholds = GaugeMetricFamily("mlcost_budget_alert_threshold_ratio",
                                   "Fractions of the budget at which alerts fire.", labels=["budget", "threshold"])
    current = GaugeMetricFamily("mlcost_budget_current_period_info",
                                "The period label of the budget's current period (always 1); selects the "
                                "current period's spend series in PromQL.", labels=["budget", "period"])
    selects = GaugeMetricFamily(
        "mlcost_budget_info",
        "Each model a budget's selector selects (always 1); joins per-model series to their budgets "
        "in PromQL without naming a budget.", labels=["budget", "model", "version"])
    burn = GaugeMetricFamily("mlcost_budget_burn_rate",
                             "This pod's current spend rate divided by the budget's affordable rate "
                             "(limit / period length); sums across pods.", labels=["budget"])
    for budget in config.budgets:
        period = snapshot.budget_periods[budget.name]
        limit.add_metric([budget.name], budget.amount_usd)
        current.add_metric([budget.name, period.label], 1)
        if budget.period != "job":  # a job's life has no known end: no bounds, no burn rate
            start.add_metric([budget.name], period.start)
            end.add_metric([budget.name], period.end)
        for threshold in budget.thresholds:
            thresholds.add_metric([budget.name, f"{threshold:g}"], threshold)
        if budget.name in snapshot.budget_burn_rate:
            burn.add_metric([budget.name], snapshot.budget_burn_rate[budget.name])
        for model in config.models:
            if budget.selector.matches(model):
                selects.add_metric([budget.name, model.name, model.version], 1)
    yield from (limit, start, end, current, thresholds, burn, selects)


def gpu_families(state: State) -> Iterator[Metric]:
    """The pod's GPUs as last read; nothing without a GPU source or a reading."""
    sample = state.gpu
    readings = sample.gpus if sample is not None else ()
    utilization = GaugeMetricFamily("mlcost_gpu_utilization_ratio",
                                    "Fraction of time the GPU was busy (NVML), 0 to 1.", labels=GPU_LABELS)
    used = GaugeMetricFamily("mlcost_gpu_memory_used_bytes", "GPU memory in use, bytes.", labels=GPU_LABELS)
    total = GaugeMetricFamily("mlcost_gpu_memory_total_bytes", "GPU memory in all, bytes.", labels=GPU_LABELS)
    power = GaugeMetricFamily("mlcost_gpu_power_watts", "GPU power draw, watts.", labels=GPU_LABELS)
    for gpu in readings:
        labels = [gpu.index, gpu.uuid, gpu.name, gpu.mig_gpu_instance, gpu.mig_compute_instance]
        if gpu.utilization is not None:
            utilization.add_metric(labels, gpu.utilization)
        used.add_metric(labels, gpu.memory_used_bytes)
        total.add_metric(labels, gpu.memory_total_bytes)
        if gpu.power_watts is not None:
            power.add_metric(labels, gpu.power_watts)
    if readings:
        yield from (utilization, used, total, power)


def process_families(state: State) -> Iterator[Metric]:
    """The serving processes' CPU and memory; nothing until a good sample."""
    sample = state.process
    if sample is None or not sample.ok:
        return
    yield CounterMetricFamily("mlcost_process_cpu_seconds", "CPU time used by the serving processes, seconds.",
                              value=sample.cpu_seconds_total)
    yield GaugeMetricFamily("mlcost_process_resident_memory_bytes",
                            "Resident memory of the serving processes, bytes.", value=sample.resident_memory_bytes)
    yield GaugeMetricFamily("mlcost_processes", "Serving processes selected.", value=sample.count)


def health_families(state: State, scrape: dict[str, StepStatus]) -> Iterator[Metric]:
    """The exporter's own health: collectors (sampled and scraped), sources, reloads, the checkpoint."""
    health = state.sampling
    success = GaugeMetricFamily("mlcost_exporter_collector_success",
                                "Whether the collector's last run succeeded (1) or failed (0).", labels=["collector"])
    duration = GaugeMetricFamily("mlcost_exporter_collector_duration_seconds",
                                 "Duration of the collector's last run, seconds.", labels=["collector"])
    for name, status in sorted({**health.steps, **scrape}.items()):
        success.add_metric([name], 1.0 if status.success else 0.0)
        duration.add_metric([name], status.duration_seconds)
    yield success
    yield duration
    up = GaugeMetricFamily("mlcost_exporter_source_up",
                           "Whether the source could be read at the last attempt (1) or not (0).", labels=["source"])
    dropped = CounterMetricFamily("mlcost_exporter_dropped_series",
                                  "Series of a source ignored because the per-source cap was reached.",
                                  labels=["source"])
    invalid = CounterMetricFamily("mlcost_exporter_invalid_samples",
                                  "Samples of a source ignored as malformed, NaN, infinite or negative.",
                                  labels=["source"])
    rejected = CounterMetricFamily("mlcost_exporter_samples_rejected",
                                   "Samples and increases of a source refused before they reached the books, by "
                                   "reason (malformed, non_finite, negative, too_large, implausible_increase).",
                                   labels=["source", "reason"])
    for name, source in health.sources.items():
        up.add_metric([name], 1.0 if source.up else 0.0)
        if source.dropped_series_total is not None:
            dropped.add_metric([name], source.dropped_series_total)
            invalid.add_metric([name], source.invalid_samples_total)
        for reason, count in sorted(source.rejected_total.items()):
            rejected.add_metric([name, reason], count)
    yield up
    yield dropped
    yield invalid
    yield rejected
    if health.gpu_source is not None:
        mismatch = GaugeMetricFamily(
            "mlcost_exporter_gpu_mismatch",
            "1 while the allocation prices GPUs that the GPU source does not see (e.g. a runtime that hides "
            "them from the container), else 0.", labels=["source"])
        mismatch.add_metric([health.gpu_source], 1.0 if health.gpu_mismatch else 0.0)
        yield mismatch
    build = GaugeMetricFamily("mlcost_exporter_build_info", "Build information (always 1).",
                              labels=["version", "pythonversion"])
    build.add_metric([__version__, platform.python_version()], 1)
    yield build
    yield from _storage_families(state)
    yield GaugeMetricFamily("mlcost_exporter_config_last_reload_successful",
                            "Whether the last config reload succeeded (1) or kept the previous config (0).",
                            value=1.0 if state.reload.successful else 0.0)
    yield GaugeMetricFamily("mlcost_exporter_config_last_reload_success_timestamp_seconds",
                            "Time of the last successful config load, Unix seconds.", value=state.reload.timestamp)


def _storage_families(state: State) -> Iterator[Metric]:
    """The checkpoint's health, only with --storage.path."""
    storage = state.storage
    if storage is None:
        return
    yield GaugeMetricFamily("mlcost_exporter_state_restored",
                            "Whether the accrued totals were restored from the checkpoint at start (1) or "
                            "started fresh (0).", value=1.0 if storage.restored else 0.0)
    yield GaugeMetricFamily("mlcost_exporter_state_gap_accrued_seconds",
                            "Downtime before this start that was accrued from the checkpoint, seconds.",
                            value=storage.gap_accrued_seconds)
    yield CounterMetricFamily("mlcost_exporter_checkpoint_write_failures",
                              "Checkpoint writes that failed (cost keeps accruing in memory).",
                              value=storage.write_failures_total)
    yield GaugeMetricFamily("mlcost_exporter_checkpoint_last_success_timestamp_seconds",
                            "Time of the last successful checkpoint write, Unix seconds (0: none yet).",
                            value=storage.last_success_timestamp)


@dataclass(frozen=True)
class FamilyBuilder:
    """Builds some families from a State. `scraped`: its own status is reported on every scrape; otherwise
    (a sampled collector) the sampler's status stands unless rendering fails."""

    name: str
    build: Callable[[State], Iterable[Metric]]
    scraped: bool = True


BUILDERS = (
    FamilyBuilder("cost", cost_families),
    FamilyBuilder("tokens", token_families),
    FamilyBuilder("energy", energy_families),
    FamilyBuilder("training", training_families),
    FamilyBuilder("quality", quality_families),
    FamilyBuilder("gpu", gpu_families, scraped=False),
    FamilyBuilder("process", process_families, scraped=False),
)


class StateCollector(Collector):
    """Reads the current State once per scrape and runs every builder on it, each wrapped."""

    def __init__(self, current: Callable[[], State], builders: Iterable[FamilyBuilder] = BUILDERS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._current = current
        self._builders = tuple(builders)
        self._monotonic = monotonic

    def collect(self) -> Iterable[Metric]:
        state = self._current()
        families: list[Metric] = []
        scrape: dict[str, StepStatus] = {}
        for builder in self._builders:
            started = self._monotonic()
            built, ok = self._run(builder.name, lambda b=builder: b.build(state))
            families.extend(built)
            if builder.scraped or not ok:
                scrape[builder.name] = StepStatus(ok, self._monotonic() - started)
        built, _ok = self._run("exporter", lambda: health_families(state, scrape))
        return families + built

    @staticmethod
    def _run(name: str, build: Callable[[], Iterable[Metric]]) -> tuple[list[Metric], bool]:
        try:
            return list(build()), True
        except Exception:
            log.exception("collector %s failed during scrape", name)
            return [], False

    def describe(self) -> Iterable[Metric]:
        return []  # families are dynamic; registering must not call collect()


def build_registry(current: Callable[[], State], monotonic: Callable[[], float] = time.monotonic,
                   ) -> CollectorRegistry:
    """A registry whose one collector renders the current State; the exporter's own health goes last."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(current, monotonic=monotonic))
    return registry
