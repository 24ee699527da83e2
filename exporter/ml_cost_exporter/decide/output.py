"""One result rendered for people (a table that fits 80 columns, markdown) or for programs (JSON, CSV).

A result is a Document: named sections of rows. Rows keep raw numbers; only the table and markdown
renderers format them, so JSON and CSV carry full precision under a stable schema.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FORMATS = ("table", "json", "csv", "markdown")
SCHEMA_VERSION = 1
WIDTH = 80


@dataclass(frozen=True)
class Column:
    """A table column; text is an identifier never cut, unless `wrap` (free text folded onto more lines)."""

    key: str
    header: str
    kind: str = "text"  # text, usd, pct (a ratio shown as %), num, int
    wrap: bool = False


@dataclass
class Section:
    name: str  # the key in JSON
    title: str
    columns: Sequence[Column]
    rows: list[Mapping[str, object]] = field(default_factory=list)


@dataclass
class Document:
    command: str
    meta: dict[str, object] = field(default_factory=dict)  # window, data source, totals...
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines shown under the tables


def format_value(value: object, kind: str) -> str:
    """A cell for people: dollars with cents (or more digits below $1), percentages, plain numbers."""
    if value is None or value == "":
        return "-"
    if kind == "usd" and isinstance(value, int | float):
        return usd(float(value))
    if kind == "pct" and isinstance(value, int | float):
        return "0.0%" if abs(value) < 0.0005 else f"{value * 100:.1f}%"
    if kind == "int" and isinstance(value, int | float):
        return f"{value:,.0f}"
    if kind == "num" and isinstance(value, int | float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def usd(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def change(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


def render(document: Document, fmt: str) -> str:
    if fmt == "json":
        return _json(document)
    if fmt == "csv":
        return _csv(document)
    if fmt == "markdown":
        return _markdown(document)
    return _table(document)


def _json(document: Document) -> str:
    body = {"schema_version": SCHEMA_VERSION, "command": document.command, "meta": document.meta,
            **{s.name: [dict(r) for r in s.rows] for s in document.sections}, "notes": document.notes}
    return json.dumps(body, indent=2, sort_keys=False) + "\n"


def _csv(document: Document) -> str:
    """The first section as CSV (one table per file); raw numbers, a header line of column keys."""
    out = io.StringIO()
    section = document.sections[0]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in section.columns])
    for row in section.rows:
        writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in section.columns])
    return out.getvalue()


def _cells(section: Section) -> list[list[str]]:
    return [[format_value(row.get(c.key), c.kind) for c in section.columns] for row in section.rows]


def _fit(headers: list[str], cells: list[list[str]], wraps: list[bool], width: int) -> list[int]:
    """Column widths that fit `width`: only free-text columns give up characters (and wrap), widest first.

    Identifiers are never cut: a table whose identifiers need more than `width` is wider (like kubectl -o wide).
    """
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > width:
        shrinkable = [i for i, w in enumerate(wraps) if w and widths[i] > max(12, len(headers[i]))]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _row_lines(row: list[str], widths: list[int], kinds: list[str], wraps: list[bool]) -> list[str]:
    """One table row as one or more lines: free text folded at word boundaries within its width."""
    import textwrap

    folded = [textwrap.wrap(v, w, break_on_hyphens=False) or [""] if wrap else [v]
              for v, w, wrap in zip(row, widths, wraps, strict=True)]
    lines = []
    for n in range(max(len(f) for f in folded)):
        parts = [(f[n] if n < len(f) else "").ljust(w) if k == "text" else (f[n] if n < len(f) else "").rjust(w)
                 for f, w, k in zip(folded, widths, kinds, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


def _table(document: Document) -> str:
    lines: list[str] = []
    for section in document.sections:
        if lines:
            lines.append("")
        if section.title:
            lines.append(section.title)
        headers = [c.header for c in section.columns]
        kinds, wraps = [c.kind for c in section.columns], [c.wrap for c in section.columns]
        cells = _cells(section)
        if not cells:
            lines.append("  (none)")
            continue
        widths = _fit(headers, cells, wraps, WIDTH)
        for row in [headers, *cells]:
            lines += _row_lines(row, widths, kinds, wraps)
    if document.notes:
        lines += ["", *wrap_notes(document.notes)]
    return "\n".join(lines) + "\n"


def _markdown(document: Document) -> str:
    lines: list[str] = []
    for section in document.sections:
        if section.title:
            lines += [f"**{section.title}**", ""]
        headers = [c.header for c in section.columns]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" if c.kind == "text" else "---:" for c in section.columns) + "|")
        for row in _cells(section):
            lines.append("| " + " | ".join(v.replace("|", "\\|") for v in row) + " |")
        lines.append("")
    lines.extend(f"_{n}_" if n else "" for n in document.notes)
    return "\n".join(lines).rstrip() + "\n"


def wrap_notes(notes: Sequence[str], width: int = WIDTH) -> list[str]:
    """Notes folded at word boundaries so the table output stays within 80 columns."""
    import textwrap

    out: list[str] = []
    for note in notes:
        out.extend(textwrap.wrap(note, width, subsequent_indent="  ", break_on_hyphens=False) or [""])
    return out


def rows_by(rows: Sequence[Mapping[str, object]], key: str) -> dict[object, Mapping[str, object]]:
    return {r[key]: r for r in rows}
