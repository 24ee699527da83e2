"""One metric family filled from a mapping of label values to values, in a stable order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def family(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, help_text: str,
           labels: Sequence[str], values: Mapping[tuple[str, ...], float]) -> Metric:
    """A counter or gauge family with one sample per key of `values` (a tuple of label values), sorted."""
    metric = kind(name, help_text, labels=list(labels))
    for label_values, value in sorted(values.items()):
        metric.add_metric(list(label_values), value)
    return metric
