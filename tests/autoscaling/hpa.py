"""A simulation of the Kubernetes HorizontalPodAutoscaler's documented algorithm (autoscaling/v2).

Per sync period (15 s): for each metric, desired = ceil(current x value / target) unless the ratio is within
the 0.1 tolerance; the maximum over metrics wins; scaling down takes the highest recommendation of the last
300 s (stabilization); scaling up is limited by the default policies (4 pods or 100 % per 15 s, whichever
is more), scaling down by 100 % per 15 s; the result is clamped to [minReplicas, maxReplicas].
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A metric: given the current replicas, the (current value, target value) the HPA would read.
Metric = Callable[[int], tuple[float, float]]


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

    def proposal(self, metric: Metric) -> int:
        value, target = metric(self.replicas)
        ratio = value / target
        if math.isnan(ratio):
            return self.replicas  # the HPA skips a metric it cannot compute
        if abs(ratio - 1.0) <= self.tolerance:
            return self.replicas
        if math.isinf(ratio):
            return self.max_replicas
        return math.ceil(self.replicas * ratio)

    def sync(self, now: float, metrics: Sequence[Metric]) -> int:
        desired = max(self.proposal(m) for m in metrics)
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
