"""`estimate --like` names the series a measured figure lacks, on a Prometheus that answers from a table."""

from __future__ import annotations

import pytest

from ml_cost_exporter.decide.errors import UsageError
from ml_cost_exporter.decide.history import Window
from ml_cost_exporter.decide.like import serving_measure, training_measure

WINDOW = Window(1_000_000.0, 1_000_000.0 + 7 * 86400)


class TablePrometheus:
    """Answers an instant query with one sample when every metric it names is in `present`."""

    def __init__(self, present: set[str]) -> None:
        self.present = present

    def _has(self, query: str) -> bool:
        named = {m for m in ("mlcost_usd_total", "mlcost_requests_total", "mlcost_allocated_gpus",
                             "mlcost_training_epochs_total") if m in query}
        return named <= self.present

    def instant(self, query: str, at: float) -> list:
        return [({}, 2.0)] if self._has(query) else []

    def range(self, query: str, start: float, end: float, step: float) -> list:
        return []


def test_training_without_gpu_counts_names_mlcost_allocated_gpus() -> None:
    prometheus = TablePrometheus({"mlcost_usd_total"})
    with pytest.raises(UsageError, match=r"no mlcost_allocated_gpus between .* needs mlcost_usd_total and "
                                         r"mlcost_allocated_gpus\)"):
        training_measure(prometheus, "trainer", WINDOW, by_epoch=False)


def test_training_prefers_epochs_and_falls_back_to_gpu_hours() -> None:
    both = TablePrometheus({"mlcost_usd_total", "mlcost_training_epochs_total", "mlcost_allocated_gpus"})
    assert training_measure(both, "trainer", WINDOW, by_epoch=True).unit == "epoch"
    assert training_measure(both, "trainer", WINDOW, by_epoch=False).unit == "GPU-hour"
    no_epochs = TablePrometheus({"mlcost_usd_total", "mlcost_allocated_gpus"})
    assert training_measure(no_epochs, "trainer", WINDOW, by_epoch=True).unit == "GPU-hour"


def test_serving_without_requests_names_mlcost_requests_total() -> None:
    with pytest.raises(UsageError, match="no mlcost_requests_total for chat:v2"):
        serving_measure(TablePrometheus({"mlcost_usd_total"}), "chat:v2", WINDOW)
    measure = serving_measure(TablePrometheus({"mlcost_usd_total", "mlcost_requests_total"}), "chat:v2", WINDOW)
    assert measure.usd == 2.0 and 'model="chat",version="v2"' in measure.queries[0]
