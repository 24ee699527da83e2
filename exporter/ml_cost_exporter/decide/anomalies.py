"""The days of a window on which a model's cost left its usual band, by the MLCostAnomaly rules' own series.

The same comparison as the alert (in the hourly group of prometheus/rules/mlcost-model.rules.yml), read hour
by hour over the window from the recorded band, so a report marks exactly the hours the alert looked at.
"""

from __future__ import annotations

import datetime as dt

from ml_cost_exporter.decide.history import Window
from ml_cost_exporter.decide.output import Column, Section

HOUR = 3600.0
BAND = "model:mlcost_usd:sum_increase1h_upper4w"
# signal -> (the hour's value above its band, the band's upper edge): the alert's two expressions.
SIGNALS = {
    "hourly_cost": ("model:mlcost_usd:sum_increase1h > model:mlcost_usd:sum_increase1h_upper4w",
                    "model:mlcost_usd:sum_increase1h_upper4w"),
    "cost_per_1k": ("model:mlcost_cost_per_1k_usd:ratio_increase1h"
                    " > model:mlcost_cost_per_1k_usd:ratio_increase1h_upper4w"
                    " and on (model) sum by (model) (last_over_time(model:mlcost_requests:increase1h[1h])) >= 100",
                    "model:mlcost_cost_per_1k_usd:ratio_increase1h_upper4w"),
}
COLUMNS = (Column("day", "DAY"), Column("model", "MODEL"), Column("signal", "SIGNAL"),
           Column("hours", "HOURS ABOVE", "int"), Column("worst", "WORST", "usd"), Column("upper", "BAND TOP", "usd"))


def anomalous_days(prometheus, window: Window) -> tuple[Section | None, str]:
    """The section of anomalous days (None when there are none) and a note saying what was checked."""
    if not prometheus.has_series(BAND, window.end, window.seconds):
        return None, "anomalies: not checked (no model:mlcost_usd:sum_increase1h_upper4w: the anomaly rules are " \
                     "not loaded, or have under four weeks of history)"
    days: dict[tuple[str, str, str], dict] = {}
    for signal, (above, upper) in SIGNALS.items():
        tops = {labels.get("model", ""): dict(points) for labels, points
                in prometheus.range(upper, window.start + HOUR, window.end, HOUR)}
        for labels, points in prometheus.range(above, window.start + HOUR, window.end, HOUR):
            model = labels.get("model", "")
            for at, value in points:
                day = dt.datetime.fromtimestamp(at - HOUR, dt.UTC).strftime("%Y-%m-%d")  # the hour it holds
                row = days.setdefault((day, model, signal), {"day": day, "model": model, "signal": signal,
                                                             "hours": 0, "worst": 0.0, "upper": None})
                row["hours"] += 1
                if value >= row["worst"]:
                    row["worst"], row["upper"] = value, tops.get(model, {}).get(at)
    rows = [days[key] for key in sorted(days)]
    if not rows:
        return None, "anomalies: none (no hour above its band of the same hour over the last weeks)"
    section = Section("anomalies", "Days on which a model's cost left its usual band (MLCostAnomaly)", COLUMNS, rows)
    return section, f"anomalies: {len(rows)} model-day(s) above the band; see docs/anomaly.md"
