"""`python -m demo`: the quick-start stack. Its options parse with the standard library alone, so `--help`
answers before anything is installed; the stack itself is imported once the options are good."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bash scripts/demo.sh",
        description="A demo inference server under load, the exporter pricing it, Prometheus with the project's "
                    "rules, Alertmanager with the project's config and a webhook sink that prints the pages.")
    parser.add_argument("--exporter-port", type=int, default=9945)
    parser.add_argument("--server-port", type=int, default=18000)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--sink-port", type=int, default=9095)
    parser.add_argument("--load-rps", type=float, default=25.0)
    parser.add_argument("--every", type=float, default=5.0, help="Seconds between status lines.")
    parser.add_argument("--duration", type=float, default=0.0, help="Stop after this many seconds (0: run on).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from demo.stack import run  # the exporter and prometheus_client: only past --help

    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
