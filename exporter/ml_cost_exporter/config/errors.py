"""The one error type every configuration problem is reported as."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, rendered on one line as `file:line: key.path: what was expected`."""

    def __init__(self, source: str, line: int | None, path: str, message: str) -> None:
        self.source = source
        self.line = line
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return text if text.isprintable() else _escape_unprintable(text)


def _escape_unprintable(text: str) -> str:
    """One line whatever a file held: newlines and other control characters as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
