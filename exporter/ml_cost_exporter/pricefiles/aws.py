"""AWS Price List bulk offer file for Amazon EC2 (offers/v1.0/aws/AmazonEC2/current/<region>/index.json).

Products carry the instance attributes; terms.OnDemand[sku][offerTermCode].priceDimensions
carry the hourly price in pricePerUnit.USD. Only shared-tenancy Linux without
pre-installed software, in the asked region, is the catalog's basis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ml_cost_exporter.pricefiles.common import Price, PriceFileError, Reader, field, month, positive_price

DEFAULT_REGION = "us-east-1"
OFFER_URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/{region}/index.json"
_LINUX_ON_DEMAND = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                    "capacitystatus": "Used", "licenseModel": "No License required", "operation": "RunInstances"}


def _matching_skus(products: Mapping[str, Any], region: str, wanted: Iterable[str]) -> dict[str, str]:
    """sku -> instance type of the Linux on-demand products in `region` for the wanted instance types."""
    wanted = set(wanted)
    skus = {}
    for sku, product in products.items():
        where = f"products.{sku}"
        attributes = field(product, "attributes", dict, where)
        if product.get("productFamily") != "Compute Instance" or attributes.get("instanceType") not in wanted:
            continue
        if attributes.get("regionCode", region) != region:
            continue
        if all(attributes.get(key) == value for key, value in _LINUX_ON_DEMAND.items()):
            skus[sku] = attributes["instanceType"]
    return skus


def _hourly(terms: Mapping[str, Any], sku: str) -> tuple[float, str]:
    """The on-demand hourly USD price of `sku` and its effective month."""
    where = f"terms.OnDemand.{sku}"
    offers = field(terms, sku, dict, "terms.OnDemand")
    prices = []
    for code, term in offers.items():
        dimensions = field(term, "priceDimensions", dict, f"{where}.{code}")
        for rate, dimension in dimensions.items():
            at = f"{where}.{code}.priceDimensions.{rate}"
            if field(dimension, "unit", str, at) != "Hrs":
                continue
            usd = field(field(dimension, "pricePerUnit", dict, at), "USD", str, f"{at}.pricePerUnit")
            prices.append((positive_price(usd, f"{at}.pricePerUnit.USD"),
                           month(term.get("effectiveDate"), f"{where}.{code}.effectiveDate")))
    if len({p for p, _ in prices}) != 1:
        raise PriceFileError(f"{where}: expected one hourly price, found {sorted({p for p, _ in prices})}")
    return prices[0]


def parse_offer(document: Mapping[str, Any], region: str, wanted: Iterable[str], origin: str) -> list[Price]:
    """The on-demand prices of the wanted instance types in an EC2 offer file."""
    if document.get("offerCode") != "AmazonEC2":
        raise PriceFileError(f"{origin}: offerCode: expected AmazonEC2, got {document.get('offerCode')!r}")
    products = field(document, "products", dict, origin)
    on_demand = field(field(document, "terms", dict, origin), "OnDemand", dict, f"{origin}: terms")
    version = str(document.get("version", "unknown"))
    by_instance: dict[str, tuple[str, float, str]] = {}
    for sku, instance in sorted(_matching_skus(products, region, wanted).items()):
        hourly, as_of = _hourly(on_demand, sku)
        seen = by_instance.get(instance)
        if seen is not None and seen[1] != hourly:
            raise PriceFileError(f"{origin}: {instance} has two Linux on-demand prices "
                                 f"({seen[0]}: {seen[1]}, {sku}: {hourly})")
        by_instance[instance] = (sku, hourly, as_of)
    source = f"AWS Price List AmazonEC2 offer {version} ({region})"
    return [Price(name, hourly, source, as_of) for name, (_, hourly, as_of) in sorted(by_instance.items())]


def read_prices(reader: Reader, locations: list[str], region: str, wanted: Iterable[str]) -> list[Price]:
    """Prices from one offer file (a path or URL); the bulk file has no pages."""
    if len(locations) != 1:
        raise PriceFileError("aws: give exactly one offer file (the per-region index.json)")
    return parse_offer(reader.json(locations[0]), region, wanted, locations[0])
