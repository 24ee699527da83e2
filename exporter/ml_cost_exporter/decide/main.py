"""The `mlcost` command line: subcommands, shared connection flags (each also from an MLCOST_* variable), exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ml_cost_exporter import __version__
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import Config, load_config
from ml_cost_exporter.decide import budgets, compare, estimate, pricing_cmd, recommend, report
from ml_cost_exporter.decide.errors import EXIT_OK, CliError, UsageError
from ml_cost_exporter.decide.output import FORMATS, render
from ml_cost_exporter.decide.promapi import Connection, Prometheus, read_secret
from ml_cost_exporter.decide.timeparse import parse_duration, parse_instant

ENV_PREFIX = "MLCOST_"
SUBCOMMANDS = (pricing_cmd, estimate, report, budgets, recommend, compare)
EXTRA_FORMATS = {"report": ("html",)}  # formats only one subcommand implements


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit status 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("mlcost").strip()  # main() prints the one "mlcost: " prefix
        raise UsageError(f"{command}: {message}" if command else message)


def env_name(flag: str) -> str:
    """--prometheus.url -> MLCOST_PROMETHEUS_URL."""
    return ENV_PREFIX + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


def _common(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)

    def flag(name: str, default: str | None, help_text: str, **kwargs) -> None:
        shown = f" (default: {default})" if default is not None else ""
        common.add_argument(name, default=environ.get(env_name(name), default),
                            help=f"{help_text}{shown} [env {env_name(name)}]", **kwargs)

    flag("--config.file", None, "Pricing config (YAML): models' targets, budgets, attribution labels, pricing.",
         dest="config_file")
    flag("--prometheus.url", "http://localhost:9090", "Prometheus server URL.", dest="prometheus_url")
    flag("--alertmanager.url", "http://localhost:9093", "Alertmanager URL (budgets).", dest="alertmanager_url")
    flag("--auth.bearer-token-file", None, "File with a bearer token sent to Prometheus and Alertmanager.",
         dest="bearer_token_file")
    flag("--auth.username", None, "Basic auth user name.", dest="username")
    flag("--auth.password-file", None, "File with the basic auth password.", dest="password_file")
    flag("--tls.ca-file", None, "CA certificate to verify the servers' certificates.", dest="ca_file")
    common.add_argument("--tls.insecure-skip-verify", dest="insecure", action="store_true",
                        default=environ.get(env_name("--tls.insecure-skip-verify"), "").lower() in ("1", "true"),
                        help="Do not verify the servers' certificates. [env MLCOST_TLS_INSECURE_SKIP_VERIFY]")
    flag("--query.timeout", "30s", "Deadline of each exchange with a server.", dest="query_timeout")
    return common


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="mlcost", description="Estimate ML jobs before they run, report what was spent, "
                     "recommend what to change.\n\nExit status: 0 fine, 1 a finding (--fail-at, --max-usd), "
                     "2 bad usage or input,\n3 Prometheus or Alertmanager unreachable or refusing, 4 (recommend) "
                     "a check could not run\nfor lack of a series.",
                     formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=100))
    parser.add_argument("--version", action="version", version=f"mlcost {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _common(environ)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers, [common])
    for name, subparser in subparsers.choices.items():
        choices = (*FORMATS, *EXTRA_FORMATS.get(name, ()))
        subparser.add_argument("--format", default=environ.get(env_name("--format"), "table"), choices=choices,
                               help=f"Output format (default: table) [env {env_name('--format')}]")
    return parser


@dataclass
class Context:
    """What every subcommand gets: its arguments, the config, and connections made on demand."""

    args: argparse.Namespace
    config: Config
    progress: bool

    def connection(self, name: str, url: str) -> Connection:
        args = self.args
        password = read_secret(args.password_file, "--auth.password-file")
        return Connection(
            name=name, url=url,
            bearer_token=read_secret(args.bearer_token_file, "--auth.bearer-token-file"),
            basic_auth=(args.username, password or "") if args.username else None,
            ca_file=args.ca_file, insecure_skip_verify=args.insecure,
            timeout_seconds=parse_duration(args.query_timeout, "--query.timeout"))

    def prometheus(self) -> Prometheus:
        return Prometheus(self.connection("Prometheus", self.args.prometheus_url), progress=self.progress)

    def alertmanager(self) -> Connection:
        return self.connection("Alertmanager", self.args.alertmanager_url)

    def instant(self, flag: str, default: float | None = None) -> float:
        """The time given with `flag` (e.g. --until), or now."""
        value = getattr(self.args, flag.lstrip("-").replace("-", "_"), None)
        if value:
            return parse_instant(value, flag)
        return default if default is not None else _now()


def _now() -> float:
    import time

    return time.time()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = build_parser(environ).parse_args(argv)
        if getattr(args, "func", None):  # pricing update: a command of its own, with its own output
            return args.func(args)
        if not getattr(args, "handler", None):
            build_parser(environ).print_help(sys.stderr)
            return 2
        try:
            config = load_config(args.config_file)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        context = Context(args, config, progress=sys.stderr.isatty())
        choices = (*FORMATS, *EXTRA_FORMATS.get(args.command, ()))
        if args.format not in choices:  # a value from MLCOST_FORMAT skips argparse's check
            raise UsageError(f"{args.command}: --format: {args.format} is not one of {', '.join(choices)}")
        document, status, message = args.handler(context)
        if not getattr(args, "output", None):  # report --output writes the file itself
            sys.stdout.write(render(document, args.format))
        if message:
            print(f"mlcost: {message}", file=sys.stderr)
        return status
    except CliError as exc:
        print(f"mlcost: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("mlcost: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
