"""A gateway's API spend counter (LiteLLM's litellm_spend_metric_total), as per-interval USD by hosted model.

Spend on a model the gateway routes to a configured self-hosted model is ignored (that model's cost is
measured here already, and the gateway's figure for it would be its own price list, not the bill); so is
spend on the gateway's `self_hosted_models`. Counter resets are handled as `rate()` does; the first read
is a baseline.
"""

from __future__ import annotations

from ml_cost_exporter.config.tokens import Gateway
from ml_cost_exporter.sources.expfmt import iter_samples, parse_labels, sample_pattern
from ml_cost_exporter.sources.plausible import DEFAULT_PLAUSIBILITY, counter_value


class HostedSpend:
    """Deltas of one gateway's spend counter between reads, summed by the hosted model label."""

    def __init__(self, gateway: Gateway, max_series: int) -> None:
        self._spec = gateway.preset.spend
        self._label = gateway.preset.spend_model_label
        self._ignored = frozenset(gateway.models) | frozenset(gateway.self_hosted_models)
        self._pattern = sample_pattern([self._spec.metric])
        self._max_series = max_series
        self._last: dict[tuple[str, str], float] | None = None  # None until the baseline read
        self.invalid_samples = 0  # at the last read

    def adopt(self, previous: HostedSpend) -> None:
        self._last = previous._last

    def deltas(self, texts: list[tuple[str, str]]) -> dict[str, float]:
        """USD spent since the last read, by hosted model, over every replica's text; empty at the baseline read."""
        current: dict[tuple[str, str], float] = {}
        spent: dict[str, float] = {}
        self.invalid_samples = 0
        samples = ((replica, *sample) for replica, text in texts for sample in iter_samples(text, self._pattern))
        for replica, _name, label_block, raw_value in samples:
            key = (replica, label_block)
            if key in current or len(current) >= self._max_series:
                continue
            labels = parse_labels(label_block)
            value, _reason = counter_value(raw_value, DEFAULT_PLAUSIBILITY)
            if labels is None or value is None:
                self.invalid_samples += 1
                continue
            model = labels.get(self._label, "")
            if model in self._ignored or not all(p.fullmatch(labels.get(k, "")) for k, p in self._spec.match):
                continue
            current[key] = value
            if self._last is None:
                continue
            previous = self._last.get(key, 0.0)
            delta = value - previous if value >= previous else value
            if delta:
                spent[model] = spent.get(model, 0.0) + delta * self._spec.scale
        self._last = current
        return spent
