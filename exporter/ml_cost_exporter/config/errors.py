"""The one error type every configuration problem is reported as."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, rendered as `file:line: key.path: what was expected`."""

    def __init__(self, source: str, line: int | None, path: str, message: str) -> None:
        self.source = source
        self.line = line
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
