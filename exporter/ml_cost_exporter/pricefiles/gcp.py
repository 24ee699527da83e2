"""GCP Cloud Billing Catalog SKUs of Compute Engine (cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus).

GCP prices a machine by its parts: vCPUs, memory and attached GPUs are separate
SKUs (e.g. "G2 Instance Core running in Americas", "Nvidia L4 GPU running in
Americas"). A machine's price is composed here from the parts in MACHINES; a
bundled Local SSD (A3) is not part of it. Pages are followed by nextPageToken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

from ml_cost_exporter.pricefiles.common import (
    MAX_PAGES,
    Price,
    PriceFileError,
    Reader,
    field,
    is_url,
    month,
    positive_price,
    redact,
)

DEFAULT_REGION = "us-central1"
API_URL = "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus?currencyCode=USD&key=$API_KEY"


@dataclass(frozen=True)
class Part:
    """One priced part of a machine: the SKU's resource group, its description's start, and its unit."""

    group: str
    prefix: str
    unit: str  # "h" per vCPU or GPU hour, "GiBy.h" per GiB hour


@dataclass(frozen=True)
class Machine:
    vcpus: float
    memory_gib: float
    core: Part
    ram: Part
    gpus: int = 0
    gpu: Part | None = None


def _family(group: str, core: str, ram: str) -> tuple[Part, Part]:
    return Part(group, core, "h"), Part(group if group == "N1Standard" else "RAM", ram, "GiBy.h")


_N1 = _family("N1Standard", "N1 Predefined Instance Core running in", "N1 Predefined Instance Ram running in")
_N2 = _family("CPU", "N2 Instance Core running in", "N2 Instance Ram running in")
_G2 = _family("CPU", "G2 Instance Core running in", "G2 Instance Ram running in")
_A2 = _family("CPU", "A2 Instance Core running in", "A2 Instance Ram running in")
_A3 = _family("CPU", "A3 Instance Core running in", "A3 Instance Ram running in")


def _gpu(prefix: str) -> Part:
    return Part("GPU", prefix, "h")


# The catalog's GCP machines as their parts (shapes from the machine-type docs).
MACHINES: Mapping[str, Machine] = {
    "n1-standard-4+nvidia-tesla-t4": Machine(4, 15, *_N1, 1, _gpu("Nvidia Tesla T4 GPU running in")),
    "n1-standard-8+nvidia-tesla-v100": Machine(8, 30, *_N1, 1, _gpu("Nvidia Tesla V100 GPU running in")),
    "g2-standard-4": Machine(4, 16, *_G2, 1, _gpu("Nvidia L4 GPU running in")),
    "a2-highgpu-1g": Machine(12, 85, *_A2, 1, _gpu("Nvidia Tesla A100 GPU running in")),
    "a2-ultragpu-1g": Machine(12, 170, *_A2, 1, _gpu("Nvidia Tesla A100 80GB GPU running in")),
    "a3-highgpu-8g": Machine(208, 1872, *_A3, 8, _gpu("Nvidia H100 80GB GPU running in")),
    **{f"n2-standard-{n}": Machine(n, 4 * n, *_N2) for n in (2, 4, 8, 16)},
}


@dataclass(frozen=True)
class _Rate:
    usd: float
    as_of: str
    sku: str


def _unit_price(sku: Mapping[str, Any], where: str) -> tuple[float, str, str]:
    """The first tier's unit price of a SKU's current pricing, its usage unit and its month."""
    infos = field(sku, "pricingInfo", list, where)
    if not infos:
        raise PriceFileError(f"{where}.pricingInfo: empty")
    info = infos[-1]
    expression = field(info, "pricingExpression", dict, f"{where}.pricingInfo[-1]")
    at = f"{where}.pricingInfo[-1].pricingExpression"
    tiers = field(expression, "tieredRates", list, at)
    first = [t for t in tiers if isinstance(t, dict) and t.get("startUsageAmount", 0) == 0]
    if not first:
        raise PriceFileError(f"{at}.tieredRates: no tier starting at 0")
    price = field(first[0], "unitPrice", dict, f"{at}.tieredRates[0]")
    if price.get("currencyCode") != "USD":
        raise PriceFileError(f"{at}.tieredRates[0].unitPrice.currencyCode: expected USD (add currencyCode=USD)")
    units, nanos = price.get("units", "0"), price.get("nanos", 0)
    try:
        usd = int(units) + int(nanos) / 1e9
    except (TypeError, ValueError):
        raise PriceFileError(f"{at}.tieredRates[0].unitPrice: units {units!r}, nanos {nanos!r}") from None
    usd = positive_price(usd, f"{at}.tieredRates[0].unitPrice")
    return usd, str(expression.get("usageUnit")), month(info.get("effectiveTime"), f"{where}.pricingInfo[-1]"
                                                                                     ".effectiveTime")


def collect_rates(page: Mapping[str, Any], region: str, origin: str,
                  rates: dict[Part, _Rate]) -> str | None:
    """Add the on-demand rates of every part in MACHINES found on one page; returns nextPageToken."""
    parts = {part for m in MACHINES.values() for part in (m.core, m.ram, m.gpu) if part is not None}
    for index, sku in enumerate(field(page, "skus", list, origin)):
        where = f"{origin}: skus[{index}]"
        category = field(sku, "category", dict, where)
        if category.get("usageType") != "OnDemand" or region not in (sku.get("serviceRegions") or []):
            continue
        description = str(sku.get("description", ""))
        for part in parts:
            if category.get("resourceGroup") != part.group or not description.startswith(part.prefix):
                continue
            usd, unit, as_of = _unit_price(sku, where)
            if unit != part.unit:
                raise PriceFileError(f"{where}: {description!r} is priced per {unit!r}, expected {part.unit!r}")
            seen = rates.get(part)
            if seen is not None and seen.usd != usd:
                raise PriceFileError(f"{where}: two on-demand prices for {part.prefix!r} in {region} "
                                     f"({seen.sku}: {seen.usd}, {sku.get('skuId')}: {usd})")
            rates[part] = _Rate(usd, as_of, str(sku.get("skuId")))
    token = page.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise PriceFileError(f"{origin}: nextPageToken: expected a string")
    return token or None


def compose(rates: Mapping[Part, _Rate], region: str, wanted: Iterable[str]) -> list[Price]:
    """Machine prices from their parts; a machine with any part missing is left out."""
    prices = []
    for name in sorted(set(wanted) & set(MACHINES)):
        machine = MACHINES[name]
        parts = [(machine.core, machine.vcpus), (machine.ram, machine.memory_gib)]
        if machine.gpu is not None:
            parts.append((machine.gpu, machine.gpus))
        if any(part not in rates for part, _ in parts):
            continue
        hourly = sum(rates[part].usd * amount for part, amount in parts)
        as_of = max(rates[part].as_of for part, _ in parts)
        source = f"GCP Cloud Billing Catalog, Compute Engine SKUs ({region})"
        prices.append(Price(name, round(hourly, 6), source, as_of))
    return prices


def _next_url(url: str, token: str) -> str:
    parsed = urlparse(url)
    query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True) if k != "pageToken"]
    return parsed._replace(query=urlencode([*query, ("pageToken", token)])).geturl()


def read_prices(reader: Reader, locations: list[str], region: str, wanted: Iterable[str]) -> list[Price]:
    """Prices from saved SKU pages (files) or the API URL, whose nextPageTokens are followed."""
    rates: dict[Part, _Rate] = {}
    pages = 0
    for location in locations:
        current: str | None = location
        while current is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise PriceFileError(f"gcp: more than {MAX_PAGES} pages")
            token = collect_rates(reader.json(current), region, redact(current), rates)
            current = _next_url(current, token) if token and is_url(current) else None
    return compose(rates, region, wanted)
