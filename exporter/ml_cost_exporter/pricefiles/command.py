"""`pricing update`: a provider's price file into the catalog overlay. Exit 0 fine, 2 bad input, 3 unreachable."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ml_cost_exporter.config.catalog import embedded_catalog
from ml_cost_exporter.pricefiles import aws, azure, gcp
from ml_cost_exporter.pricefiles.common import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    PriceFetchError,
    PriceFileError,
    Reader,
)
from ml_cost_exporter.pricefiles.overlay import existing_entries, imported_entries, render, write_overlay

IMPORTERS = {"aws": aws, "gcp": gcp, "azure": azure}
EXIT_OK, EXIT_INPUT, EXIT_PEER = 0, 2, 3

_AZURE_SHELL_URL = azure.API_URL.format(region=azure.DEFAULT_REGION).replace("$", "\\$")  # for "..." in a shell
EPILOG = f"""\
examples:
  # offline, from a saved file
  %(prog)s aws --from index.json --output catalog-overlay.yaml
  # online (machines with internet)
  %(prog)s aws --from {aws.OFFER_URL.format(region=aws.DEFAULT_REGION)} \\
      -o catalog-overlay.yaml
  %(prog)s azure --from "{_AZURE_SHELL_URL}" \\
      -o catalog-overlay.yaml
  %(prog)s gcp --from "{gcp.API_URL}" \\
      -o catalog-overlay.yaml   # API_KEY: a Google Cloud API key

Then set pricing.catalog_file: catalog-overlay.yaml in the pricing config.
Exit codes: 0 written, 2 bad input (the overlay is left as it was), 3 a URL unreachable.
"""


def add_update_command(subparsers: argparse._SubParsersAction,
                       environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Register `update` on an argparse subparsers object (`mlcost pricing update`)."""
    environ = os.environ if environ is None else environ
    parser = subparsers.add_parser(
        "update", help="write a catalog overlay from a provider's price file",
        description="Read a provider's official price file (a path or URL) and write the catalog overlay that "
                    "pricing.catalog_file loads. Only instance types the catalog knows are priced; their shapes "
                    "come from the catalog.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("provider", choices=sorted(IMPORTERS), help="whose price file it is")
    parser.add_argument("--from", dest="inputs", action="append", required=True, metavar="PATH_OR_URL",
                        help="price file or URL; repeat for saved pages (Azure, GCP); URLs follow their pages")
    parser.add_argument("-o", "--output", default=environ.get("MLCOST_PRICING_CATALOG_FILE"),
                        required="MLCOST_PRICING_CATALOG_FILE" not in environ,
                        help="overlay file to write; other providers' entries in it are kept "
                             "(env MLCOST_PRICING_CATALOG_FILE)")
    parser.add_argument("--region", help="region to price (default: aws us-east-1, gcp us-central1, azure eastus)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help="seconds for all downloads together (default %(default)s)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="largest document read (default %(default)s)")
    parser.set_defaults(func=run_update)
    return parser


def run_update(args: argparse.Namespace) -> int:
    """Import, validate and write; on any error print one line to stderr and leave the overlay untouched."""
    importer = IMPORTERS[args.provider]
    region = args.region or importer.DEFAULT_REGION
    base = embedded_catalog()
    output = Path(args.output)
    try:
        known = base.providers[args.provider].instances
        prices = importer.read_prices(Reader(args.max_bytes, args.timeout), args.inputs, region, known)
        if not prices:
            raise PriceFileError(f"{args.provider}: no prices for the catalog's instance types in {region} "
                                 "(wrong region or file?)")
        providers = existing_entries(output, base)
        providers[args.provider] = imported_entries(base, args.provider, prices)
        write_overlay(output, render(providers), base)
    except PriceFileError as exc:
        print(f"pricing update: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except PriceFetchError as exc:
        print(f"pricing update: {exc}", file=sys.stderr)
        return EXIT_PEER
    missing = sorted(set(known) - {p.instance for p in prices})
    print(f"{output}: {args.provider} {region}: {len(prices)} instance prices written"
          + (f"; not in the price file: {', '.join(missing)}" if missing else ""))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python -m ml_cost_exporter.pricefiles update ...`."""
    parser = argparse.ArgumentParser(prog="python -m ml_cost_exporter.pricefiles",
                                     description="Provider price files into ml-cost-exporter catalog overlays.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_update_command(commands, environ)
    args = parser.parse_args(argv)
    return args.func(args)
