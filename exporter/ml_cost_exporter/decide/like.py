"""`estimate --like`: a job priced from a model's measured history, over the whole window, idle hours included.

Serving: cost per 1k = the window's inference cost / the window's requests. Training: cost per epoch from the
exporter's training counters, else cost per GPU-hour. Each figure names the series it could not find.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ml_cost_exporter.decide.errors import UsageError
from ml_cost_exporter.decide.history import Window
from ml_cost_exporter.decide.output import Column, Section
from ml_cost_exporter.decide.promapi import Prometheus
from ml_cost_exporter.decide.timeparse import iso, parse_duration, promql_duration

DAY = 86400.0
LIKE_COLUMNS = (Column("figure", "MEASURED"), Column("window", "WINDOW", "usd"), Column("p10", "P10 DAY", "usd"),
                Column("p90", "P90 DAY", "usd"))


@dataclass
class LikeResult:
    section: Section
    meta: dict
    note: str


@dataclass(frozen=True)
class Measure:
    """One measured unit cost: what it is per, the window's figure, and its daily range."""

    unit: str  # "1k requests", "epoch", "GPU-hour"
    usd: float  # the window's cost / the window's units
    daily: list[float]
    queries: list[str]


def _matcher(like: str) -> str:
    model, _, version = like.partition(":")
    return f'model="{model}"' + (f',version="{version}"' if version else "")


def _scalar(prometheus: Prometheus, query: str, at: float) -> float | None:
    rows = prometheus.instant(query, at)
    return rows[0][1] if rows else None


def _present(prometheus: Prometheus, metric: str, matcher: str, window: Window) -> bool:
    selector = f"{metric}{{{matcher}}}" if matcher else metric
    return bool(prometheus.instant(f"count(count_over_time({selector}[{promql_duration(window.seconds)}]))",
                                   window.end))


def _missing(prometheus: Prometheus, like: str, window: Window, needed: list[tuple[str, str]], units: str) -> None:
    """Raise naming the first series of `needed` the window lacks (matcher "" for series without model labels)."""
    between = f"between {iso(window.start)} and {iso(window.end)}"
    names = " and ".join(metric for metric, _ in needed)
    for metric, matcher in needed:
        if not _present(prometheus, metric, matcher, window):
            of = f" for {like}" if matcher else ""
            raise UsageError(f"--like: no {metric}{of} {between} (its cost per {units} needs {names})")
    raise UsageError(f"--like: {like} has cost but no {units}s {between}")


def _at_span(template: str, seconds: float) -> str:
    """The template's ranges: {span} for counters, {subspan} for subqueries (open at the start: no extra hour)."""
    return template.replace("{span}", promql_duration(seconds)).replace("{subspan}", _open_range(seconds))


def _open_range(seconds: float) -> str:
    return f"{round(seconds * 1000) - 1}ms"


def _ratio(prometheus: Prometheus, numerator: str, denominator: str, window: Window, scale: float,
           ) -> tuple[float | None, list[float], str]:
    """numerator / denominator over the window, and the same per whole day of it (days without units skipped)."""
    query = _at_span(f"{numerator} / ({denominator} > 0) * {scale:g}", window.seconds)
    total = _scalar(prometheus, query, window.end)
    daily_query = _at_span(f"{numerator} / ({denominator} > 0) * {scale:g}", DAY)
    days = int(window.seconds // DAY)
    daily = []
    if days >= 1:
        first = window.end - (days - 1) * DAY
        for _, points in prometheus.range(daily_query, first, window.end, DAY):
            daily += [v for _, v in points]
    return total, daily, query


def serving_measure(prometheus: Prometheus, like: str, window: Window) -> Measure:
    m = _matcher(like)
    cost = f'sum(increase(mlcost_usd_total{{{m},workload="inference"}}[{{span}}]))'
    requests = f"sum(increase(mlcost_requests_total{{{m}}}[{{span}}]))"
    usd, daily, query = _ratio(prometheus, cost, requests, window, 1000)
    if usd is None:
        _missing(prometheus, like, window, [("mlcost_usd_total", f'{m},workload="inference"'),
                                            ("mlcost_requests_total", m)],
                 "1k request")
    return Measure("1k requests", usd, daily, [query])


def training_measure(prometheus: Prometheus, like: str, window: Window, by_epoch: bool) -> Measure:
    m = _matcher(like)
    cost = f"sum(increase(mlcost_usd_total{{{m}}}[{{span}}]))"
    if by_epoch and _present(prometheus, "mlcost_training_epochs_total", m, window):
        epochs = f"sum(increase(mlcost_training_epochs_total{{{m}}}[{{span}}]))"
        usd, daily, query = _ratio(prometheus, cost, epochs, window, 1)
        if usd is not None:
            return Measure("epoch", usd, daily, [query])
    # GPU-hours: each hour's GPUs of the pods that ran the model (a subquery at a 1h step)
    gpus = f"sum(mlcost_allocated_gpus * on (instance) group_left () group by (instance) (mlcost_usd_total{{{m}}}))"
    gpu_hours = f"sum_over_time({gpus}[{{subspan}}:1h])"
    usd, daily, query = _ratio(prometheus, cost, gpu_hours, window, 1)
    if usd is None:
        _missing(prometheus, like, window, [("mlcost_usd_total", m), ("mlcost_allocated_gpus", "")],
                 "GPU-hour")
    return Measure("GPU-hour", usd, daily, [query])


def coverage_hours(prometheus: Prometheus, like: str, window: Window) -> float:
    """Hours of the window in which the model had a cost series (the history's coverage)."""
    query = f"count_over_time(sum(mlcost_usd_total{{{_matcher(like)}}})[{_open_range(window.seconds)}:1h])"
    return _scalar(prometheus, query, window.end) or 0.0


def _percentiles(values: list[float], fallback: float) -> tuple[float, float]:
    if len(values) < 2:
        return fallback, fallback
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], deciles[8]


def like_history(context, like: str, job, hours: float, history: str) -> LikeResult:
    """The job priced at a measured model's unit cost over the whole --history window."""
    end = context.instant("--at")
    window = Window(end - parse_duration(history, "--history"), end)
    prometheus = context.prometheus()
    if job.request_rate is not None:
        measure = serving_measure(prometheus, like, window)
        units = job.request_rate * hours * 3.6  # thousands of requests
    else:
        measure = training_measure(prometheus, like, window, by_epoch=bool(job.epochs))
        units = job.epochs if measure.unit == "epoch" else job.gpus * hours
    covered = coverage_hours(prometheus, like, window)
    prometheus.done()
    p10, p90 = _percentiles(measure.daily, measure.usd)
    window_hours = window.seconds / 3600
    rows = [{"figure": f"$ per {measure.unit}", "window": measure.usd, "p10": p10, "p90": p90},
            {"figure": "total", "window": measure.usd * units, "p10": p10 * units, "p90": p90 * units}]
    meta = {"model": like, "unit": measure.unit, "usd_per_unit": measure.usd, "units": units,
            "total_usd": measure.usd * units, "hours_of_history": covered, "window_hours": window_hours,
            "coverage": covered / window_hours if window_hours else None, "days": len(measure.daily),
            "p10_usd": p10 * units, "p50_usd": measure.usd * units, "p90_usd": p90 * units,
            "query": measure.queries[0]}
    note = (f"measured: {like}'s cost per {measure.unit} over {iso(window.start)} to {iso(window.end)} (idle "
            f"hours included); it ran {covered:.0f} of the window's {window_hours:.0f} h; P10/P90: its daily "
            "figures; --max-usd gates on the window's total")
    return LikeResult(Section("measured", f"From {like}'s measured history", LIKE_COLUMNS, rows), meta, note)
