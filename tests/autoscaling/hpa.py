"""A simulation of the Kubernetes HorizontalPodAutoscaler's documented algorithm (autoscaling/v2).

Per sync period (15 s): for each metric, desired = ceil(current x value / target) unless the ratio is within
the 0.1 tolerance; the maximum over metrics wins; scaling down takes the highest recommendation of the last
300 s (stabilization); scaling up is limited by the default policies (4 pods or 100 % per 15 s, whichever
is more), scaling down by 100 % per 15 s; the result is clamped to [minReplicas, maxReplicas].

A metric that cannot be read (no series behind it: the adapter answers with nothing) is invalid. As the
controller does since Kubernetes 1.21 (kubernetes/kubernetes#99514, computeReplicasForMetrics: `invalidMetricsCount
>= len(metricSpecs) || (invalidMetricsCount > 0 && replicas < specReplicas)`), a sync with an invalid metric
changes nothing, and records no recommendation, when all metrics are invalid or when the valid ones would
scale down; it scales up on the valid ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A metric: given the current replicas, the (current value, target value) the HPA would read, or None when
# the metric has no data.
Metric = Callable[[int], tuple[float, float] | None]


@dataclass
class Hpa:
    min_replicas: int
    max_replicas: int
    replicas: int
    tolerance: float = 0.1
    sync_seconds: float = 15.0
    scale_down_stabilization_seconds: float = 300.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    scale_down_percent: float = 100.0
    _recommendations: deque = field(default_factory=deque)
    blocked_syncs: int = 0  # syncs that changed nothing because a metric was invalid

    def proposal(self, metric: Metric) -> int | None:
        """The replicas one metric asks for, or None when it is invalid."""
        reading = metric(self.replicas)
        if reading is None:
            return None
        value, target = reading
        ratio = value / target
        if math.isnan(ratio):
            return None
        if abs(ratio - 1.0) <= self.tolerance:
            return self.replicas
        if math.isinf(ratio):
            return self.max_replicas
        return math.ceil(self.replicas * ratio)

    def sync(self, now: float, metrics: Sequence[Metric]) -> int:
        proposals = [self.proposal(m) for m in metrics]
        valid = [p for p in proposals if p is not None]
        if not valid or (len(valid) < len(proposals) and max(valid) < self.replicas):
            self.blocked_syncs += 1
            return self.replicas
        desired = max(valid)
        self._recommendations.append((now, desired))
        while self._recommendations and self._recommendations[0][0] <= now - self.scale_down_stabilization_seconds:
            self._recommendations.popleft()
        if desired < self.replicas:
            desired = min(self.replicas, max(r for _, r in self._recommendations))
            floor = math.floor(self.replicas * (1 - self.scale_down_percent / 100))
            desired = max(desired, floor)
        elif desired > self.replicas:
            ceiling = max(self.replicas + self.scale_up_pods,
                          math.ceil(self.replicas * (1 + self.scale_up_percent / 100)))
            desired = min(desired, ceiling)
        self.replicas = max(self.min_replicas, min(self.max_replicas, desired))
        return self.replicas
