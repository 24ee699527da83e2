"""Catalog prices as `mlcost` shows and compares them, priced through cost.pricing (money is set in one place)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

from ml_cost_exporter.config.catalog import CLOUD_PROVIDERS, PURCHASE_OPTIONS, Catalog, GpuOffer
from ml_cost_exporter.config.schema import Config, parse_config
from ml_cost_exporter.cost.pricing import ResolvedAllocation, price_allocation

ONPREM = "onprem"
OWNED = "owned"  # the purchase option of on-prem hardware: amortized purchase plus energy


@dataclass(frozen=True)
class Quote:
    """The hourly price of one allocation on one provider under one purchase option."""

    provider: str
    purchase_option: str
    instance: str  # the reference instance the GPU price comes from ("" on-prem)
    hourly_usd: float
    source: str
    as_of: str


@cache
def _base_config() -> Config:
    return parse_config("", "<mlcost>")


def _config(catalog: Catalog, provider: str, option: str, instance_type: str | None = None) -> Config:
    base = _base_config()
    pricing = replace(base.pricing, provider=provider, purchase_option=option if provider != ONPREM else "on_demand")
    return replace(base, pricing=pricing, catalog=catalog, allocation=replace(base.allocation,
                                                                              instance_type=instance_type))


def _host_share(catalog: Catalog, gpu_type: str) -> GpuOffer | None:
    """The host (vCPUs, memory) that comes with one GPU: from the first provider offering it."""
    for name in CLOUD_PROVIDERS:
        offer = catalog.providers[name].gpu_offers.get(gpu_type)
        if offer is not None:
            return offer
    return None


def _hourly(config: Config, allocation: ResolvedAllocation) -> float:
    rates = price_allocation(config, allocation)
    energy = rates.fallback_power_watts / 1000.0 * rates.energy_usd_per_kwh  # on-prem: TDP until measured
    return sum(rates.static_usd_per_hour().values()) + energy


def provenance(catalog: Catalog, provider: str, instance: str | None) -> tuple[str, str]:
    """(source, month) of a price: the instance's own where the catalog has them, else its provider's."""
    if provider == ONPREM:
        return catalog.onprem.source, catalog.onprem.as_of
    entry = catalog.providers[provider]
    item = entry.instances.get(instance) if instance else None
    return getattr(item, "source", entry.source), getattr(item, "as_of", entry.as_of)


def gpu_quote(catalog: Catalog, provider: str, option: str, gpu_type: str, gpus: float) -> Quote | None:
    """What `gpus` GPU units of `gpu_type` (with their host share) cost an hour; None where not offered."""
    gpu = catalog.gpu_types[gpu_type]
    host = _host_share(catalog, gpu_type)
    if host is None:
        return None
    if provider != ONPREM:
        offer = catalog.providers[provider].gpu_offers.get(gpu_type)
        if offer is None:
            return None
        host, instance = offer, offer.instance
    else:
        instance = ""
    allocation = ResolvedAllocation(gpu, gpus, host.vcpus * gpus, host.memory_gib * gpus)
    source, as_of = provenance(catalog, provider, instance)
    return Quote(provider, option, instance, _hourly(_config(catalog, provider, option), allocation), source, as_of)


def instance_quote(catalog: Catalog, provider: str, option: str, instance_type: str) -> Quote:
    entry = catalog.providers[provider].instances[instance_type]
    gpu = catalog.gpu_types[entry.gpu_type] if entry.gpu_type else None
    allocation = ResolvedAllocation(gpu, float(entry.gpus), entry.vcpus, entry.memory_gib)
    hourly = _hourly(_config(catalog, provider, option, instance_type), allocation)
    source, as_of = provenance(catalog, provider, instance_type)
    return Quote(provider, option, instance_type, hourly, source, as_of)


def all_gpu_quotes(catalog: Catalog, gpu_type: str, gpus: float) -> list[Quote]:
    """The same GPUs on every provider and purchase option (and owned on-prem), cheapest first."""
    quotes = [gpu_quote(catalog, p, o, gpu_type, gpus) for p in CLOUD_PROVIDERS for o in PURCHASE_OPTIONS]
    quotes.append(gpu_quote(catalog, ONPREM, OWNED, gpu_type, gpus))
    return sorted((q for q in quotes if q is not None), key=lambda q: (q.hourly_usd, q.provider, q.purchase_option))


def locate_instance(catalog: Catalog, instance_type: str) -> str | None:
    """The provider whose catalog lists `instance_type`."""
    for name in CLOUD_PROVIDERS:
        if instance_type in catalog.providers[name].instances:
            return name
    return None
