"""What the exporter prices, said in a few lines at start and after each reload.

A zero-config start on a laptop, a CPU-only VM or a pod whose runtime hides
the GPU must not look the same: the summary names the allocation and where
each figure came from, the price per hour and its source, the models and
servers, and the processes measured; a GPU that cannot be read is a warning
whose advice fits where the exporter runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ml_cost_exporter.sources.nvml import nvml_advice
from ml_cost_exporter.state import State


def _usd(amount: float) -> str:
    """Cents from a dollar up, two significant digits below (a small budget stays readable)."""
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:#.2g}"


def allocation_line(state: State) -> str:
    """The allocation, where each figure came from, and its price an hour by resource."""
    rates, pricing = state.rates, state.config.pricing
    allocation = rates.allocation
    gpus = "no GPU"
    if allocation.gpu_type is not None and allocation.gpus > 0:
        found = "config" if state.config.allocation.gpu is not None else f"found by {state.sampling.gpu_source}"
        gpus = f"{allocation.gpus:g} x {allocation.gpu_type.id} GPU ({found})"
    hourly = rates.static_usd_per_hour()
    parts = ", ".join(f"{name} {_usd(value)}" for name, value in hourly.items() if value > 0)
    provider = state.config.catalog.providers.get(pricing.provider)
    priced_at = (f"{pricing.provider} {pricing.purchase_option} prices (catalog of {provider.as_of})"
                 if provider is not None else "owned-hardware prices")
    return (f"pricing {gpus}, {allocation.vcpus:g} vCPUs ({allocation.vcpus_from}) and {allocation.memory_gib:.3g} "
            f"GiB memory ({allocation.memory_from}) at {priced_at}: {_usd(sum(hourly.values()))} an hour"
            + (f" ({parts})" if parts else ""))


def models_line(state: State) -> str:
    models = []
    for model in state.config.models:
        server = f" from {model.server.preset.name} at {model.server.url}" if model.server is not None else ""
        models.append(f"{model.name} {model.version}{server}")
    budgets = [f"{b.name} {_usd(b.amount_usd)} a {b.period}" for b in state.config.budgets]
    return f"models: {'; '.join(models)}" + (f"; budgets: {', '.join(budgets)}" if budgets else "")


def processes_line(state: State) -> str | None:
    if state.process is None and "psutil" not in state.sampling.sources:
        return None
    selection = state.config.processes
    chosen = ", ".join([*selection.names, *(p.pattern for p in selection.cmdline_patterns)])
    measured = state.process.count if state.process is not None else 0
    return (f"processes: {measured} measured, "
            f"{f'selected by {chosen}' if chosen else 'every process but the exporter (no processes selection)'}")


def gpu_warning(state: State, environ: Mapping[str, str] | None = None) -> str | None:
    """A warning where a GPU source runs but reads no GPU and the config prices none."""
    sample = state.gpu
    if state.sampling.gpu_source is None or state.config.allocation.gpu is not None:
        return None
    if sample is not None and sample.ok and sample.gpus:
        return None
    why = sample.error if sample is not None and sample.error else "no GPU listed"
    advice = nvml_advice(os.environ if environ is None else environ)
    return f"no GPU found by {state.sampling.gpu_source} ({why}): pricing CPU and memory only; {advice}"


def summary(state: State) -> list[str]:
    """The start-up (or reload) summary, one line each."""
    lines = [allocation_line(state), models_line(state)]
    processes = processes_line(state)
    if processes is not None:
        lines.append(processes)
    return lines
