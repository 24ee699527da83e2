"""Collectors of a training job's progress against its cost, and of a model's cost against its quality
(docs/training.md)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_cost_exporter.exposition.families import family
from ml_cost_exporter.state import State


def training_families(state: State) -> Iterator[Metric]:
    """A training job's progress against its cost."""
    snapshot = state.books.training
    for unit, help_text in (("samples", "Training samples processed"), ("steps", "Training steps taken"),
                            ("epochs", "Training epochs completed (fractions count)"),
                            ("tokens", "Training tokens processed")):
        quantity = "training_tokens" if unit == "tokens" else unit
        totals = {(model, version): value for (model, version, total_unit), value
                  in snapshot.progress_total.items() if total_unit == quantity}
        yield family(CounterMetricFamily, f"mlcost_training_{unit}",
                     f"{help_text} while the exporter watched, from the job's own counters.",
                     ["model", "version"], totals)
    gauges = [
        ("mlcost_training_cost_per_epoch_usd", "Accrued cost per epoch over the rolling cost window, USD; "
         "absent while the job makes no progress.", snapshot.cost_per_epoch_usd),
        ("mlcost_training_cost_per_1m_samples_usd", "Accrued cost per 1,000,000 training samples over the "
         "rolling cost window, USD; absent while the job makes no progress.", snapshot.cost_per_1m_samples_usd),
        ("mlcost_training_progress_ratio", "The job's progress: its epochs (else samples) counter over the "
         "expected total, 0 to 1; absent without an expected total.", snapshot.progress_ratio),
        ("mlcost_training_projected_cost_usd", "Projected cost of the job at completion: cost so far plus the "
         "remaining work at the window's cost per unit, USD.", snapshot.projected_cost_usd),
    ]
    for name, help_text, values in gauges:
        yield family(GaugeMetricFamily, name, help_text, ["model", "version"], values)


def quality_families(state: State) -> Iterator[Metric]:
    """A model's own quality figure beside its cost, so a cheaper version that loses accuracy shows."""
    per_1k = state.books.ledger.cost_per_1k_usd
    quality = GaugeMetricFamily("mlcost_model_quality", "The model's quality figure as its server reports it "
                                "(the preset's quality metric, e.g. accuracy or an eval score).",
                                labels=["model", "version"])
    good = GaugeMetricFamily("mlcost_cost_per_1k_good_results_usd",
                             "Cost per 1,000 good results over the rolling cost window, USD: cost per 1k "
                             "divided by the good fraction (quality, or 1 - quality where lower is better, "
                             "for a quality between 0 and 1).", labels=["model", "version"])
    for model in state.config.models:
        figure = state.books.values.get(model.key, {}).get("quality")
        if figure is None:
            continue
        quality.add_metric([model.name, model.version], figure)
        fraction = figure if model.quality_higher_is_better else 1.0 - figure
        if model.key in per_1k and 0.0 < fraction <= 1.0 and 0.0 <= figure <= 1.0:
            good.add_metric([model.name, model.version], per_1k[model.key] / fraction)
    yield quality
    yield good
