"""The final report a stopping exporter leaves in the container's termination message.

Kubernetes shows a container's termination message (the file at its
terminationMessagePath, /dev/termination-log by default, at most 4096 bytes)
in `kubectl describe pod` and in the pod's status, so a finished training Job
says what it cost without a Prometheus query. The file is written only where it
already exists (Kubernetes creates it), so running outside Kubernetes leaves no
stray file behind.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ml_cost_exporter.cost.books import job_cost
from ml_cost_exporter.cost.energy import JOULES_PER_KWH
from ml_cost_exporter.state import State

log = logging.getLogger(__name__)
MAX_BYTES = 4096  # Kubernetes truncates termination messages beyond this


def usd(amount: float) -> str:
    """Dollars readable at any size: cents from $1 up, four significant digits below."""
    return f"${amount:,.2f}" if abs(amount) >= 1 or amount == 0 else f"${amount:.4g}"


def termination_message(state: State) -> str:
    """One line per model: total cost, cost per unit of work, progress, energy and carbon."""
    ledger, energy, training = state.books.ledger, state.books.energy, state.books.training
    cost = job_cost(ledger)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.at))
    lines = [f"ml-cost-exporter final report at {stamp}"]
    for model in state.config.models:
        key = model.key
        parts = [f"{model.name} {model.version} ({model.workload}): {usd(cost.get(key, 0.0))} in all"]
        if key in training.cost_per_epoch_usd:
            parts.append(f"{usd(training.cost_per_epoch_usd[key])} per epoch")
        epochs = training.progress_total.get((*key, "epochs"))
        if epochs is not None:
            parts.append(f"{epochs:.2f} epochs")
        if key in training.progress_ratio:
            parts.append(f"{training.progress_ratio[key]:.0%} done")
        requests = ledger.requests_total.get(key, 0.0)
        if requests:
            parts.append(f"{requests:.0f} requests")
        if key in energy.joules_total:
            parts.append(f"{energy.joules_total[key] / JOULES_PER_KWH:.3f} kWh GPU energy")
        if key in energy.carbon_grams_total:
            parts.append(f"{energy.carbon_grams_total[key] / 1000:.3f} kg CO2e")
        lines.append(", ".join(parts))
    return "\n".join(lines) + "\n"


def write_termination_message(path: str | None, state: State) -> bool:
    """Write the report where Kubernetes reads it; never raises, since the exporter is stopping anyway."""
    if not path or not Path(path).is_file():
        return False
    try:
        text = termination_message(state).encode()[:MAX_BYTES]
        Path(path).write_bytes(text)
    except Exception as exc:  # a report must never turn a clean stop into a crash
        log.warning("cannot write the termination message to %s: %s", path, exc)
        return False
    return True
