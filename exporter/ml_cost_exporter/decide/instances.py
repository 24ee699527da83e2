"""The instance a multi-GPU replica runs on: its GPUs share one machine, so the whole instance is priced."""

from __future__ import annotations

from ml_cost_exporter.config.catalog import Catalog, Instance


def holding(catalog: Catalog, provider: str, gpu_type: str, gpus: float) -> Instance | None:
    """The provider's cheapest instance with at least `gpus` GPUs of `gpu_type`; None where none holds them."""
    fitting = [i for i in catalog.providers[provider].instances.values()
               if i.gpu_type == gpu_type and i.gpus >= gpus]
    return min(fitting, key=lambda i: (i.hourly_usd, i.gpus, i.name)) if fitting else None


def gpu_counts(catalog: Catalog, provider: str, gpu_type: str) -> list[int]:
    """The GPU counts of the provider's instances of `gpu_type`, for the message when none holds a job."""
    return sorted({i.gpus for i in catalog.providers[provider].instances.values() if i.gpu_type == gpu_type})


def needs_whole_instance(gpus: float, mig_profile: str | None) -> bool:
    """More than one whole GPU per replica: they must sit in one instance (not in 1-GPU shares)."""
    return mig_profile is None and gpus > 1
