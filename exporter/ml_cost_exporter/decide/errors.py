"""The failures `mlcost` reports in one line, each with its documented exit status."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDING = 1  # a budget past --fail-at, an estimate over --max-usd
EXIT_USAGE = 2  # bad flags, bad input files, an empty window
EXIT_PEER = 3  # Prometheus or Alertmanager unreachable, unauthorized or answering garbage
EXIT_INCOMPLETE = 4  # recommend: a check could not run for lack of a series (the others' advice is shown)


class CliError(Exception):
    """An error shown as one line on stderr; `status` is the exit status."""

    status = EXIT_USAGE


class UsageError(CliError):
    status = EXIT_USAGE


class PeerError(CliError):
    status = EXIT_PEER
