"""Storage and egress for `mlcost estimate`: a job's volumes (GiB for some months) and the bytes it sends."""

from __future__ import annotations

import argparse

from ml_cost_exporter.config.bill import DESTINATIONS
from ml_cost_exporter.config.catalog import Catalog
from ml_cost_exporter.cost.pricing import HOURS_PER_MONTH, egress_usd, storage_usd
from ml_cost_exporter.decide.errors import UsageError

DEFAULT_CLASS = {"aws": "gp3", "gcp": "pd-balanced", "azure": "premium-ssd"}


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-gib", type=float, help="Volumes the job keeps, GiB (priced per GiB-month).")
    parser.add_argument("--storage-class", help="Their storage class (default: gp3, pd-balanced, premium-ssd).")
    parser.add_argument("--storage-months", type=float, help="How long they are kept (default: the job's hours).")
    parser.add_argument("--egress-gib", type=float, help="GiB the job sends, priced at --egress-destination.")
    parser.add_argument("--egress-destination", choices=DESTINATIONS, default="internet",
                        help="Where the bytes go (default internet, at the first tier).")


def _amount(value: float | None, flag: str) -> float | None:
    if value is not None and not value >= 0:
        raise UsageError(f"{flag}: must be 0 or more, got {value}")
    return value


def bill_figures(args: argparse.Namespace, provider: str, catalog: Catalog, hours: float) -> list[dict]:
    """The estimate's storage and egress rows; none without the flags. One UsageError for what has no price."""
    rows = []
    gib = _amount(args.storage_gib, "--storage-gib")
    prices = catalog.providers.get(provider)
    if gib:
        name = args.storage_class or DEFAULT_CLASS.get(provider)
        classes = prices.storage_classes if prices is not None else {}
        if name not in classes:
            raise UsageError(f'--storage-class: {provider} has no storage class "{name}" in the catalog '
                             f'(known: {", ".join(sorted(classes)) or "none"})')
        months = _amount(args.storage_months, "--storage-months")
        months = months if months is not None else hours / HOURS_PER_MONTH
        rows.append({"figure": "storage", "usd": storage_usd(classes[name].usd_per_gib_month, gib, months),
                     "basis": f"{gib:g} GiB {name} x {months:.3g} months"})
    egress = _amount(args.egress_gib, "--egress-gib")
    if egress:
        if prices is None or prices.egress is None:
            raise UsageError(f"--egress-gib: {provider} has no egress prices in the catalog")
        per_gib = prices.egress.usd_per_gib(args.egress_destination, 0.0)
        rows.append({"figure": "egress", "usd": egress_usd(per_gib, egress),
                     "basis": f"{egress:g} GiB {args.egress_destination} x ${per_gib:g}"})
    return rows
