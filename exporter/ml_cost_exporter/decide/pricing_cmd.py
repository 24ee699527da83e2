"""`mlcost pricing`: the embedded catalog as a table, filtered, or one GPU type compared across providers.

Other commands nest under it with one call on the subparsers it returns (e.g. `add_update_command(sub)`).
"""

from __future__ import annotations

import argparse

from ml_cost_exporter.config.catalog import CLOUD_PROVIDERS, PURCHASE_OPTIONS, Catalog
from ml_cost_exporter.config.located import suggest
from ml_cost_exporter.decide.errors import EXIT_OK, UsageError
from ml_cost_exporter.decide.output import Column, Document, Section
from ml_cost_exporter.decide.prices import all_gpu_quotes, instance_quote
from ml_cost_exporter.pricefiles.command import add_update_command

EXAMPLE = """examples:
  mlcost pricing --gpu a100-80gb --purchase-option on_demand
  mlcost pricing --compare l4 --format markdown"""

PRICE_COLUMNS = (Column("provider", "PROVIDER"), Column("purchase_option", "OPTION"), Column("instance", "INSTANCE"),
                 Column("gpu_type", "GPU"), Column("gpus", "GPUS", "int"), Column("hourly_usd", "$/HOUR", "usd"),
                 Column("gpu_hourly_usd", "$/GPU-HOUR", "usd"), Column("as_of", "AS OF"))
COMPARE_COLUMNS = (Column("rank", "#", "int"), Column("provider", "PROVIDER"), Column("purchase_option", "OPTION"),
                   Column("instance", "REFERENCE INSTANCE"), Column("gpu_hourly_usd", "$/GPU-HOUR", "usd"),
                   Column("vs_cheapest", "VS CHEAPEST", "num"), Column("as_of", "AS OF"))


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> argparse._SubParsersAction:
    """Add `pricing`; returns its own subparsers so nested commands (`pricing update`) can be added."""
    parser = subparsers.add_parser("pricing", parents=parents, help="Show the price catalog.",
                                   description="Show the embedded price catalog (USD per hour, list prices).",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=CLOUD_PROVIDERS, help="Only this provider.")
    parser.add_argument("--gpu", dest="gpu_type", help="Only this GPU type (catalog id, e.g. l4).")
    parser.add_argument("--purchase-option", choices=PURCHASE_OPTIONS, help="Only this purchase option.")
    parser.add_argument("--compare", metavar="GPU", help="One GPU type on every provider and option, cheapest first.")
    parser.add_argument("--cpu", action="store_true", help="Include CPU-only instances.")
    parser.set_defaults(handler=run)
    nested = parser.add_subparsers(dest="pricing_command", metavar="{update}", parser_class=type(parser))
    add_update_command(nested)  # mlcost pricing update: the providers' price files into a catalog overlay
    return nested


def check_gpu_type(catalog: Catalog, gpu_type: str, flag: str) -> str:
    if gpu_type not in catalog.gpu_types:
        known = sorted(catalog.gpu_types)
        raise UsageError(f'{flag}: unknown GPU type "{gpu_type}"{suggest(gpu_type, known)} '
                         f'(known: {", ".join(known)})')
    return gpu_type


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    catalog = context.config.catalog
    if args.compare:
        return compare(catalog, check_gpu_type(catalog, args.compare, "--compare")), EXIT_OK, None
    if args.gpu_type:
        check_gpu_type(catalog, args.gpu_type, "--gpu")
    rows = []
    for name in CLOUD_PROVIDERS if not args.provider else (args.provider,):
        for instance in catalog.providers[name].instances.values():
            if (args.gpu_type and instance.gpu_type != args.gpu_type) or (not instance.gpu_type and not args.cpu):
                continue
            for option in PURCHASE_OPTIONS if not args.purchase_option else (args.purchase_option,):
                quote = instance_quote(catalog, name, option, instance.name)
                rows.append({"provider": name, "purchase_option": option, "instance": instance.name,
                             "gpu_type": instance.gpu_type or "", "gpus": instance.gpus,
                             "hourly_usd": quote.hourly_usd,
                             "gpu_hourly_usd": quote.hourly_usd / instance.gpus if instance.gpus else None,
                             "as_of": quote.as_of, "source": quote.source})
    document = Document("pricing", {"filters": {"provider": args.provider, "gpu_type": args.gpu_type,
                                                "purchase_option": args.purchase_option}})
    document.sections.append(Section("prices", "", PRICE_COLUMNS, rows))
    document.notes = _sources(rows)
    return document, EXIT_OK, None


def compare(catalog: Catalog, gpu_type: str) -> Document:
    quotes = all_gpu_quotes(catalog, gpu_type, 1.0)
    cheapest = quotes[0].hourly_usd if quotes else 0.0
    rows = [{"rank": i + 1, "provider": q.provider, "purchase_option": q.purchase_option,
             "instance": q.instance or "(amortized + energy at TDP)", "gpu_hourly_usd": q.hourly_usd,
             "vs_cheapest": q.hourly_usd / cheapest if cheapest else None, "as_of": q.as_of, "source": q.source}
            for i, q in enumerate(quotes)]
    document = Document("pricing", {"compare": gpu_type, "gpu": catalog.gpu_types[gpu_type].display_name})
    title = f"One {catalog.gpu_types[gpu_type].display_name} with its host share, cheapest first"
    document.sections.append(Section("prices", title, COMPARE_COLUMNS, rows))
    missing = [p for p in CLOUD_PROVIDERS if gpu_type not in catalog.providers[p].gpu_offers]
    document.notes = [f"not offered by: {', '.join(missing)}"] if missing else []
    document.notes += _sources(rows)
    return document


def _sources(rows: list[dict]) -> list[str]:
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(row["provider"], f"{row['provider']}: {row['source']} ({row['as_of']})")
    return [f"source {line}" for line in seen.values()]

