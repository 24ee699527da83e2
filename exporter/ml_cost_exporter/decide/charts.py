"""The report's charts (matplotlib, from the `cli` extra): daily cost by model, cost per 1k against targets, idle share.

Imported only when a chart is asked for, so tables stay fast and the sidecar never needs matplotlib.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ml_cost_exporter.decide.errors import UsageError
from ml_cost_exporter.decide.history import History, recorded_sum

DAY = 86400
TOP_MODELS = 12  # more models than this are stacked as "other"


@dataclass
class ReportSeries:
    days: list[float] = field(default_factory=list)
    daily_usd: dict[str, list[float]] = field(default_factory=dict)  # model -> USD per day
    per_1k: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # "model version" -> points
    targets: dict[str, float] = field(default_factory=dict)
    idle_share: dict[str, float] = field(default_factory=dict)


def report_series(history: History) -> ReportSeries:
    """Three range/instant queries at a one-day step, whatever the number of models."""
    window, prometheus = history.window, history.prometheus
    start = window.start + DAY
    if history.recorded:
        usd, requests = recorded_sum("model:mlcost_usd:increase1h", DAY), recorded_sum(
            "model:mlcost_requests:increase1h", DAY)
        inference = recorded_sum('model:mlcost_usd:increase1h{workload="inference"}', DAY)
        cost = f"sum by (model) ({usd})"
        per_1k = f"sum by (model, version) ({inference}) / (sum by (model, version) ({requests}) > 0) * 1000"
    else:
        cost = "sum by (model) (increase(mlcost_usd_total[1d]))"
        per_1k = ("sum by (model, version) (increase(mlcost_usd_total{workload=\"inference\"}[1d])) / "
                  "(sum by (model, version) (increase(mlcost_requests_total[1d])) > 0) * 1000")
    series = ReportSeries()
    steps = int((window.end - start) // DAY) + 1
    series.days = [start + i * DAY for i in range(max(steps, 0))]
    index = {t: i for i, t in enumerate(series.days)}
    for labels, points in prometheus.range(cost, start, window.end, DAY):
        values = [0.0] * len(series.days)
        for t, v in points:
            if t in index:
                values[index[t]] = v
        series.daily_usd[labels.get("model", "")] = values
    for labels, points in prometheus.range(per_1k, start, window.end, DAY):
        series.per_1k[f"{labels.get('model', '')} {labels.get('version', '')}"] = points
    for labels, value in prometheus.instant("max by (model, version) (mlcost_target_cost_per_1k_usd)", window.end):
        series.targets[f"{labels.get('model', '')} {labels.get('version', '')}"] = value
    return series


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("charts need matplotlib: pip install 'ml-cost-exporter[cli]'") from None
    plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "svg.hashsalt": "mlcost"})
    return plt


def _dates(days: list[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t - DAY / 2, UTC) for t in days]  # each bar centred on the day it sums


def _stacked(series: ReportSeries) -> dict[str, list[float]]:
    ranked = sorted(series.daily_usd, key=lambda m: -sum(series.daily_usd[m]))
    out = {m: series.daily_usd[m] for m in ranked[:TOP_MODELS]}
    if len(ranked) > TOP_MODELS:
        other = [0.0] * len(series.days)
        for m in ranked[TOP_MODELS:]:
            other = [a + b for a, b in zip(other, series.daily_usd[m], strict=True)]
        out["other"] = other
    return out


def daily_figure(series: ReportSeries):
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.8), dpi=100)
    bottom = [0.0] * len(series.days)
    dates = _dates(series.days)
    for model, values in _stacked(series).items():
        axes.bar(dates, values, bottom=bottom, width=0.85, label=model)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    axes.set_title("Daily cost by model (USD)")
    axes.set_ylabel("USD per day")
    _legend_outside(axes, 4)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def _legend_outside(axes, columns: int) -> None:
    """The legend under the plot, so it never covers the tallest bars or the highest line."""
    axes.legend(fontsize=7, ncols=columns, loc="upper center", bbox_to_anchor=(0.5, -0.38), frameon=False)


def per_1k_figure(series: ReportSeries):
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.8), dpi=100)
    for name, points in sorted(series.per_1k.items())[:TOP_MODELS]:
        line = axes.plot(_dates([t for t, _ in points]), [v for _, v in points], marker=".", label=name)[0]
        if name in series.targets:
            axes.axhline(series.targets[name], color=line.get_color(), linestyle="--", linewidth=1)
    axes.set_title("Cost per 1,000 requests (USD, daily); dashed: target")
    _legend_outside(axes, 3)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def idle_figure(idle_share: dict[str, float]):
    plt = _pyplot()
    names = sorted(idle_share, key=lambda m: -idle_share[m])[:TOP_MODELS]
    figure, axes = plt.subplots(figsize=(8, 0.5 + 0.3 * max(len(names), 1)), dpi=100)
    axes.barh(names, [idle_share[n] * 100 for n in names], color="#d62728")
    axes.set_xlim(0, 100)
    axes.invert_yaxis()
    axes.set_title("Idle share of cost by model (%)")
    figure.tight_layout()
    return figure


def svg(figure) -> str:
    """The figure as inline SVG markup (no external references)."""
    plt = _pyplot()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def write_daily_png(series: ReportSeries, path: str) -> None:
    plt = _pyplot()
    figure = daily_figure(series)
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise UsageError(f"--chart: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def idle_by_model(rows: list[dict]) -> dict[str, float]:
    cost, idle = defaultdict(float), defaultdict(float)
    for row in rows:
        if row.get("group") == "TOTAL":
            continue
        model = str(row.get("model") or row.get("group"))
        cost[model] += row["cost_usd"]
        idle[model] += row.get("idle_usd") or 0.0
    return {m: idle[m] / cost[m] for m in cost if cost[m] > 0}
