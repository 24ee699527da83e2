"""Collector of measured GPU energy and its carbon, per model (docs/energy.md)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_cost_exporter.exposition.families import family
from ml_cost_exporter.state import State


def energy_families(state: State) -> Iterator[Metric]:
    """Measured GPU energy and its carbon, per model; absent until energy has been measured."""
    snapshot = state.books.energy
    families = [
        (CounterMetricFamily, "mlcost_energy_joules", "Energy drawn by the pod's GPUs, attributed to the model "
         "like its cost, joules (NVML's energy counter where the GPU has one, else power x time).",
         snapshot.joules_total),
        (CounterMetricFamily, "mlcost_carbon_grams", "Carbon of that energy: energy x PUE x the grid's carbon "
         "intensity, grams CO2e.", snapshot.carbon_grams_total),
        (GaugeMetricFamily, "mlcost_energy_per_1k_requests_joules", "GPU energy per 1,000 successful requests "
         "over the rolling cost window, joules; absent without requests.", snapshot.joules_per_1k_requests),
        (GaugeMetricFamily, "mlcost_training_energy_per_epoch_joules", "GPU energy per epoch of training over "
         "the rolling cost window, joules; absent without progress.", snapshot.joules_per_epoch),
    ]
    for kind, name, help_text, values in families:
        yield family(kind, name, help_text, ["model", "version"], values)
    energy = state.config.energy
    if energy.carbon_intensity_g_per_kwh is not None:
        intensity = GaugeMetricFamily("mlcost_carbon_intensity_grams_per_kwh",
                                      "Grid carbon intensity applied to energy, grams CO2e per kWh.",
                                      labels=["region", "source"])
        intensity.add_metric([energy.region or "", energy.source], energy.carbon_intensity_g_per_kwh)
        yield intensity
    yield GaugeMetricFamily("mlcost_power_usage_effectiveness_ratio",
                            "Facility energy per unit of IT energy (PUE) applied to carbon.", value=energy.pue)
