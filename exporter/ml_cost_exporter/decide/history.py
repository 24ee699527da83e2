"""What Prometheus recorded over a window: model-level totals, from the 1h recorded series where they exist.

Queries are few and fixed in number (one per figure, grouped by every label at once); grouping by
team or another attribution label happens here, joining mlcost_model_info's labels client-side.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ml_cost_exporter.decide.errors import UsageError
from ml_cost_exporter.decide.output import Column, Section
from ml_cost_exporter.decide.promapi import Prometheus
from ml_cost_exporter.decide.timeparse import iso, parse_duration, promql_duration

RECORDED = {  # the hourly model rules: increase over the preceding hour, summed over pods, every hour
    "usd": ("model:mlcost_usd:increase1h", "mlcost_usd_total", "model, version, workload, resource"),
    "idle": ("model:mlcost_idle_usd:increase1h", "mlcost_idle_usd_total", "model, version, resource"),
    "requests": ("model:mlcost_requests:increase1h", "mlcost_requests_total", "model, version"),
    "failed": ("model:mlcost_failed_requests:increase1h", "mlcost_failed_requests_total", "model, version"),
    "tokens": ("model:mlcost_tokens:increase1h", "mlcost_tokens_total", "model, version, kind"),
}


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def previous(self) -> Window:
        return Window(self.start - self.seconds, self.start)


def window_from(context, since_flag: str = "--since", until_flag: str = "--until") -> Window:
    end = context.instant(until_flag)
    seconds = parse_duration(getattr(context.args, since_flag.lstrip("-")), since_flag)
    return Window(end - seconds, end)


class History:
    """Window totals of the exporter's counters; `recorded` says whether the 1h recordings were used."""

    def __init__(self, prometheus: Prometheus, window: Window, data: str = "auto") -> None:
        self.prometheus = prometheus
        self.window = window
        self.data = data  # auto, recorded or raw
        self._recorded: dict[Window, bool] = {}
        self.recorded = self.uses_recorded(window)
        self.promql: dict[str, str] = {}

    def uses_recorded(self, window: Window) -> bool:
        """Recorded only if the recordings reach back to the window's start (rules deployed later: raw)."""
        if self.data != "auto":
            return self.data == "recorded"
        if window not in self._recorded:
            self._recorded[window] = self.prometheus.has_series(RECORDED["usd"][0], window.start + 3600, 3600)
        return self._recorded[window]

    def query_for(self, kind: str, window: Window | None = None) -> str:
        window = window or self.window
        recorded, raw, labels = RECORDED[kind]
        if self.uses_recorded(window):
            # The range stops one second short of the window's start: each recorded sample covers the hour
            # before it, so the sample at the start belongs to the previous window.
            inner = f"sum_over_time({recorded}[{int(window.seconds) - 1}s])"
        else:
            inner = f"increase({raw}[{promql_duration(window.seconds)}])"
        return f"sum by ({labels}) ({inner})"

    def totals(self, kind: str, window: Window | None = None) -> list[tuple[dict[str, str], float]]:
        window = window or self.window
        query = self.query_for(kind, window)
        self.promql.setdefault(kind, query)
        return self.prometheus.instant(query, window.end)

    def model_labels(self) -> dict[tuple[str, str], dict[str, str]]:
        """Attribution labels of every model seen in the window, from mlcost_model_info."""
        query = f"max_over_time(mlcost_model_info[{promql_duration(self.window.seconds)}])"
        out: dict[tuple[str, str], dict[str, str]] = {}
        for labels, _ in self.prometheus.instant(query, self.window.end):
            key = (labels.get("model", ""), labels.get("version", ""))
            kept = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance", "pod", "namespace")}
            out.setdefault(key, {}).update({k: v for k, v in kept.items() if v})
        return out

    def source_note(self) -> str:
        previous = self.window.previous()
        mixed = previous in self._recorded and self._recorded[previous] != self.recorded
        tail = "; the previous window from " + ("recorded series" if not self.recorded else "raw counters")
        if self.recorded:
            return "data: recorded series model:*:increase1h (sum_over_time)" + (tail if mixed else "")
        return ("data: raw counters (increase()); the model:*:increase1h recordings do not cover the window"
                + (tail if mixed else ""))


def group(rows: Iterable[tuple[dict[str, str], float]], by: tuple[str, ...],
          labels: Mapping[tuple[str, str], Mapping[str, str]]) -> dict[tuple[str, ...], float]:
    """Sum values into groups of the `by` labels, taking labels absent from a series from its model's info."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for series, value in rows:
        info = labels.get((series.get("model", ""), series.get("version", "")), {})
        out[tuple(series.get(k) or info.get(k) or "" for k in by)] += value
    return dict(out)


@dataclass
class LikeResult:
    section: Section
    meta: dict
    note: str


LIKE_COLUMNS = (Column("figure", "MEASURED"), Column("p10", "P10", "usd"), Column("p50", "P50", "usd"),
                Column("p90", "P90", "usd"))


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], statistics.median(values), deciles[8]


def like_history(context, like: str, job, hours: float, history: str) -> LikeResult:
    """A range for the job from a measured model: its hourly $ per GPU (training) or $ per 1k (serving)."""
    model, _, version = like.partition(":")
    end = context.instant("--at")
    seconds = parse_duration(history, "--history")
    prometheus = context.prometheus()
    matcher = f'model="{model}"' + (f',version="{version}"' if version else "")
    serving = job.request_rate is not None
    if serving:
        query = (f'sum(increase(mlcost_usd_total{{{matcher},workload="inference"}}[1h])) / '
                 f'(sum(increase(mlcost_requests_total{{{matcher}}}[1h])) > 0) * 1000')
    else:
        query = f"sum(increase(mlcost_usd_total{{{matcher}}}[1h])) / sum(mlcost_allocated_gpus * on (instance) " \
                f"group_left () max by (instance) (mlcost_model_info{{{matcher}}}))"
    series = prometheus.range(query, end - seconds + 3600, end, 3600)
    prometheus.done()
    values = [v for _, points in series for _, v in points if v > 0]
    if not values:
        raise UsageError(f'--like: no history of {like} between {iso(end - seconds)} and {iso(end)}')
    p10, p50, p90 = _percentiles(values)
    if serving:
        scale = job.request_rate * hours * 3.6  # thousands of requests
        figure = "$ per 1k requests"
    else:
        scale = job_units(job) * hours
        figure = "$ per GPU-hour"
    rows = [{"figure": figure, "p10": p10, "p50": p50, "p90": p90},
            {"figure": "total", "p10": p10 * scale, "p50": p50 * scale, "p90": p90 * scale}]
    meta = {"model": like, "hours_of_history": len(values), "query": query, "p10_usd": p10 * scale,
            "p50_usd": p50 * scale, "p90_usd": p90 * scale}
    note = (f"measured: {len(values)} hours of {like} history up to {iso(end)}; "
            "the range is its p10-p90 hour (the --max-usd gate uses p90)")
    return LikeResult(Section("measured", f"From {like}'s measured history", LIKE_COLUMNS, rows), meta, note)


def job_units(job) -> float:
    return job.gpus
