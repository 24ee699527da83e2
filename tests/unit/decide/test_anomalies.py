"""`mlcost report` marks the days a model's cost left its band, hour by hour as the alert compares them."""

from __future__ import annotations

import datetime as dt

from ml_cost_exporter.decide.anomalies import anomalous_days
from ml_cost_exporter.decide.history import Window

DAY = 86400.0
START = 1_790_000_000.0 - 1_790_000_000.0 % DAY  # a UTC midnight
WINDOW = Window(START, START + 3 * DAY)


class BandPrometheus:
    """Serves the band's series from a table: (query fragment) -> [(labels, [(t, v)])]."""

    def __init__(self, table: dict, band_present: bool = True) -> None:
        self.table = table
        self.band_present = band_present
        self.queries: list[str] = []

    def has_series(self, metric: str, at: float, lookback: float) -> bool:
        return self.band_present

    def range(self, query: str, start: float, end: float, step: float) -> list:
        self.queries.append(query)
        assert (start, end, step) == (WINDOW.start + 3600, WINDOW.end, 3600)  # every hour the window holds
        return next((rows for fragment, rows in self.table.items() if query.startswith(fragment)), [])


def test_hours_above_the_band_are_grouped_by_the_day_they_hold_with_the_worst_hour():
    hour = 3600.0
    above = [({"model": "chat"}, [(START + DAY + 3 * hour, 4.0), (START + DAY + 4 * hour, 6.0)]),
             ({"model": "embed"}, [(START + DAY, 2.0)])]  # stamped at midnight: the hour of the day before
    upper = [({"model": "chat"}, [(START + DAY + 4 * hour, 2.5)])]
    prometheus = BandPrometheus({"model:mlcost_usd:sum_increase1h >": above,
                                 "model:mlcost_usd:sum_increase1h_upper4w": upper})
    section, note = anomalous_days(prometheus, WINDOW)
    day0, day1 = (dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d") for t in (START, START + DAY))
    assert section.rows == [  # by day, then model
        {"day": day0, "model": "embed", "signal": "hourly_cost", "hours": 1, "worst": 2.0, "upper": None},
        {"day": day1, "model": "chat", "signal": "hourly_cost", "hours": 2, "worst": 6.0, "upper": 2.5},
    ]
    assert note.startswith("anomalies: 2 model-day(s)")
    assert any("ratio_increase1h" in q and ">= 100" in q for q in prometheus.queries)  # the per-1k signal, too


def test_without_the_band_the_report_says_the_check_did_not_run():
    section, note = anomalous_days(BandPrometheus({}, band_present=False), WINDOW)
    assert section is None and note.startswith("anomalies: not checked")


def test_a_window_inside_the_band_has_no_section_and_says_so():
    section, note = anomalous_days(BandPrometheus({}), WINDOW)
    assert section is None and note.startswith("anomalies: none")
