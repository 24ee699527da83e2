"""What Prometheus recorded over a window: model-level totals, from the 1h recorded series where they exist.

Queries are few and fixed in number (one per figure, grouped by every label at once); grouping by
team or another attribution label happens here, joining mlcost_model_info's labels client-side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ml_cost_exporter.decide.promapi import Prometheus
from ml_cost_exporter.decide.timeparse import parse_duration, promql_duration

RECORDED = {  # the hourly model rules: increase over the preceding hour, summed over pods, every hour
    "usd": ("model:mlcost_usd:increase1h", "mlcost_usd_total", "model, version, workload, resource"),
    "idle": ("model:mlcost_idle_usd:increase1h", "mlcost_idle_usd_total", "model, version, resource"),
    "requests": ("model:mlcost_requests:increase1h", "mlcost_requests_total", "model, version"),
    "failed": ("model:mlcost_failed_requests:increase1h", "mlcost_failed_requests_total", "model, version"),
    "tokens": ("model:mlcost_tokens:increase1h", "mlcost_tokens_total", "model, version, kind"),
    "tenant_usd": ("model_tenant:mlcost_tenant_usd:increase1h", "mlcost_tenant_usd_total", "model, version, tenant"),
    "energy": (None, "mlcost_energy_joules_total", "model, version"),  # no hourly recording: raw counters
    "carbon": (None, "mlcost_carbon_grams_total", "model, version"),
}


HOUR_SHIFT = "3599999ms"  # a recording stamped in [hh:00, hh+1:00) is the hour ending at hh:00
HOUR_SHIFT_SECONDS = 3599.999


def recorded_sum(recorded: str, seconds: float) -> str:
    """Sum of a 1h recording over the whole hours ending in (T - seconds, T], whatever minute the rule ran.

    The hourly group is evaluated at some minute of each hour; its sample stamped hh:mm holds the clock hour
    that ended at hh:00 (the rules make it so, docs/rules.md#hourly-series), so the range is moved forward by
    just under an hour and no edge needs correcting.
    """
    return f"sum_over_time({recorded}[{int(seconds)}s] offset -{HOUR_SHIFT})"


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
            first_hour = window.start + 3600 + HOUR_SHIFT_SECONDS  # the samples of the window's first hour
            self._recorded[window] = self.prometheus.has_series(RECORDED["usd"][0], first_hour, 3600)
        return self._recorded[window]

    def query_for(self, kind: str, window: Window | None = None) -> str:
        window = window or self.window
        recorded, raw, labels = RECORDED[kind]
        if recorded and self.uses_recorded(window):
            inner = recorded_sum(recorded, window.seconds)
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
