"""Azure Retail Prices API pages (https://prices.azure.com/api/retail/prices), followed by NextPageLink.

Each page is {"Items": [...], "NextPageLink": ..., "Count": n}; an item is one meter
with armSkuName, armRegionName, retailPrice, unitOfMeasure, type and productName.
Linux pay-as-you-go is type Consumption without "Windows" in the product name
and without Spot or Low Priority in the SKU name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

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

DEFAULT_REGION = "eastus"
API_URL = ("https://prices.azure.com/api/retail/prices?$filter=serviceName eq 'Virtual Machines' "
           "and armRegionName eq '{region}' and priceType eq 'Consumption'")


def _is_linux_pay_as_you_go(item: Mapping[str, Any], region: str) -> bool:
    return (item.get("type") == "Consumption" and item.get("serviceName") == "Virtual Machines"
            and item.get("armRegionName") == region and item.get("unitOfMeasure") == "1 Hour"
            and item.get("currencyCode", "USD") == "USD"
            and "Windows" not in str(item.get("productName", ""))
            and not any(word in str(item.get("skuName", "")) for word in ("Spot", "Low Priority")))


def parse_page(page: Mapping[str, Any], region: str, wanted: set[str], origin: str) -> tuple[list[Price], str | None]:
    """The wanted Linux pay-as-you-go prices on one page, and the next page's link."""
    items = field(page, "Items", list, origin)
    prices = []
    for index, item in enumerate(items):
        where = f"{origin}: Items[{index}]"
        if not isinstance(item, dict):
            raise PriceFileError(f"{where}: expected an object, got {type(item).__name__}")
        if item.get("armSkuName") not in wanted or not _is_linux_pay_as_you_go(item, region):
            continue
        hourly = positive_price(item.get("retailPrice"), f"{where}.retailPrice")
        as_of = month(item.get("effectiveStartDate"), f"{where}.effectiveStartDate")
        prices.append(Price(item["armSkuName"], hourly, f"Azure Retail Prices API ({region})", as_of))
    link = page.get("NextPageLink")
    if link is not None and not isinstance(link, str):
        raise PriceFileError(f"{origin}: NextPageLink: expected a string or null")
    return prices, link or None


def _latest(prices: list[Price], origin: str) -> list[Price]:
    """One price per instance type: the newest meter; two different prices of one month are an error."""
    chosen: dict[str, Price] = {}
    for price in prices:
        seen = chosen.get(price.instance)
        if seen is None or price.as_of > seen.as_of:
            chosen[price.instance] = price
        elif price.as_of == seen.as_of and price.hourly_usd != seen.hourly_usd:
            raise PriceFileError(f"{origin}: {price.instance} has two Linux pay-as-you-go prices for "
                                 f"{price.as_of} ({seen.hourly_usd}, {price.hourly_usd})")
    return [chosen[name] for name in sorted(chosen)]


def read_prices(reader: Reader, locations: list[str], region: str, wanted: Iterable[str]) -> list[Price]:
    """Prices from saved pages (files, each one page) or a URL whose NextPageLinks are followed."""
    wanted = set(wanted)
    prices: list[Price] = []
    queue = list(locations)
    first_host = {urlparse(loc).hostname for loc in locations if is_url(loc)}
    pages = 0
    while queue:
        location = queue.pop(0)
        pages += 1
        if pages > MAX_PAGES:
            raise PriceFileError(f"azure: more than {MAX_PAGES} pages; narrow the $filter")
        found, link = parse_page(reader.json(location), region, wanted, redact(location))
        prices.extend(found)
        if link and is_url(location):
            if urlparse(link).hostname not in first_host:
                raise PriceFileError(f"{redact(location)}: NextPageLink leaves {', '.join(sorted(first_host))}: "
                                     f"{redact(link)}")
            queue.insert(0, link)
    return _latest(prices, "azure")
