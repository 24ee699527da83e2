"""Command line: flags in node_exporter's vocabulary, each also read from an MLCOST_* variable."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ml_cost_exporter import __version__
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.units import parse_duration as _parse_duration
from ml_cost_exporter.runtime import HostPaths, Runtime
from ml_cost_exporter.sampling import SAMPLED_COLLECTORS

DEFAULT_PORT = 9945
ENV_PREFIX = "MLCOST_"
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
EXIT_CONFIG = 2
def parse_duration(text: str) -> float:
    """A Prometheus duration ("90s", "15m", "1h30m") in seconds; raises argparse.ArgumentTypeError."""
    try:
        return _parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


UNLIMITED_REQUESTS = 1024  # "0 = no limit" still bounds the worker threads


def env_name(flag: str) -> str:
    """--web.listen-address -> MLCOST_WEB_LISTEN_ADDRESS."""
    return ENV_PREFIX + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _max_requests(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number or UNLIMITED_REQUESTS


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-cost-exporter",
        description="Prometheus exporter that prices what an inference or training pod uses. "
                    f"Every flag can also be set through an environment variable ({ENV_PREFIX}FLAG_NAME).",
        # A fixed width keeps --help identical everywhere (the README pastes it).
        formatter_class=lambda prog: argparse.HelpFormatter(prog, width=100),
    )

    def flag(name: str, default: str | None, help_text: str, **kwargs) -> None:
        shown = f" (default: {default})" if default is not None else ""
        parser.add_argument(name, default=environ.get(env_name(name), default),
                            help=f"{help_text}{shown} [env {env_name(name)}]", **kwargs)

    flag("--config.file", None, "Pricing config (YAML). Without it, embedded defaults price what the "
                                "container can see.", dest="config_file")
    flag("--pod.labels-file", None, "Downward-API file of the pod's labels, added to every model's attribution "
                                    "labels.", dest="pod_labels_file")
    flag("--storage.path", None, "Directory for the checkpoint that keeps accrued cost across restarts "
                                 "(an emptyDir in Kubernetes). Without it a restart loses the time the exporter "
                                 "is down.", dest="storage_path")
    flag("--storage.max-gap", "15m", "Longest downtime accrued on restart, at the allocation's price; longer "
                                     "gaps are logged and not accrued.", dest="storage_max_gap", type=parse_duration)
    flag("--web.listen-address", f":{DEFAULT_PORT}", "Address to listen on.", dest="listen_address")
    flag("--web.telemetry-path", "/metrics", "Path under which to expose metrics.", dest="telemetry_path")
    flag("--web.config.file", None, "Web config (exporter-toolkit format) for TLS and basic auth.",
         dest="web_config_file")
    flag("--kubernetes.termination-message-path", "/dev/termination-log",
         "On stop, write each model's final cost, cost per epoch and energy here, if the file exists "
         "(Kubernetes creates it); empty to disable.", dest="termination_message_path")
    flag("--web.max-requests", "40", "Maximum number of requests served at once; the excess is answered 503. "
                                     "0 means no limit.", dest="max_requests", type=_max_requests)
    flag("--path.sysfs", "/sys", "sysfs mount point: the pod's interfaces' transmit counters (egress).",
         dest="path_sysfs")
    flag("--path.procfs", "/proc", "procfs mount point: /proc/net/dev where sysfs has no class/net.",
         dest="path_procfs")
    flag("--path.rootfs", "/", "Root the volume paths of the config (storage.volumes[].path) are read under.",
         dest="path_rootfs")
    flag("--log.level", "info", "Only log messages with this severity or above.", dest="log_level",
         choices=list(LOG_LEVELS))
    flag("--log.format", "logfmt", "Log line format.", dest="log_format", choices=["logfmt", "json"])
    for name in SAMPLED_COLLECTORS:
        variable = env_name(f"--collector.{name}")
        enabled = _truthy(environ[variable]) if variable in environ else True
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--collector.{name}", dest=f"collector_{name}", action="store_true", default=enabled,
                           help=f"Enable the {name} collector (default: enabled) [env {variable}=true|false].")
        group.add_argument(f"--no-collector.{name}", dest=f"collector_{name}", action="store_false",
                           help=f"Disable the {name} collector.")
    parser.add_argument("--version", action="version", version=f"ml-cost-exporter {__version__}")
    return parser


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace('"', '\\"')
        line = (f'ts={self.formatTime(record, "%Y-%m-%dT%H:%M:%S")} level={record.levelname.lower()} '
                f'logger={record.name} msg="{message}"')
        if record.exc_info:
            line += ' err="' + self.formatException(record.exc_info).replace("\n", " | ").replace('"', "'") + '"'
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["err"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LOG_LEVELS[level])


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    log = logging.getLogger("ml_cost_exporter")
    enabled = frozenset(n for n in SAMPLED_COLLECTORS if getattr(args, f"collector_{n}"))

    from ml_cost_exporter.exposition.collectors import build_registry
    from ml_cost_exporter.exposition.front import Limits
    from ml_cost_exporter.exposition.http import WebConfigReloader, start_http_server
    from ml_cost_exporter.exposition.termination import write_termination_message
    from ml_cost_exporter.exposition.webconfig import load_web_config

    try:
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
        runtime = Runtime(args.config_file, enabled, pod_labels_file=args.pod_labels_file,
                          storage_path=args.storage_path, max_gap_seconds=args.storage_max_gap,
                          host=HostPaths(Path(args.path_sysfs), Path(args.path_procfs), Path(args.path_rootfs)))
    except ConfigError as exc:
        print(f"ml-cost-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        registry = build_registry(runtime.state, runtime.clocks.monotonic)
        server, _thread = start_http_server(args.listen_address, registry, args.telemetry_path,
                                            web_config, Limits(max_requests=args.max_requests))
    except (OSError, ValueError) as exc:
        print(f"ml-cost-exporter: cannot listen on {args.listen_address}: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    log.info("ml-cost-exporter %s listening on %s:%d%s (collectors: %s; config: %s)", __version__, host, port,
             args.telemetry_path, ",".join(sorted(enabled)) or "none", runtime.config.source)

    web_reloader = WebConfigReloader(args.web_config_file, server).start(web_config) if web_config else None

    def hangup(*_: object) -> None:
        runtime.request_reload()
        if web_reloader is not None:
            web_reloader.request()

    stop = threading.Event()
    signal.signal(signal.SIGHUP, hangup)

    def shutdown(*_: object) -> None:
        stop.set()
        runtime.request_stop()  # no source is waited for any more; the loop wakes, sees `stop` and leaves

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runtime.run(stop)
    log.info("stopping: accruing up to now%s", ", writing the checkpoint" if args.storage_path else "")
    try:
        runtime.tick()  # the last interval's cost, up to the moment of stopping
    except Exception:
        log.exception("final accrual failed")
    write_termination_message(args.termination_message_path, runtime.state())
    if web_reloader is not None:
        web_reloader.close()
    server.shutdown()
    runtime.close()
    log.info("stopped")
    return 0
