"""The self-contained HTML report: the report's tables and inline SVG charts, no scripts or network."""

from __future__ import annotations

import html

from ml_cost_exporter.decide import charts
from ml_cost_exporter.decide.errors import UsageError
from ml_cost_exporter.decide.output import Document, format_value

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .7em;border-bottom:1px solid #ddd}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr:last-child td{font-weight:600}
.chart{margin:1.5em 0}.note{color:#666;font-size:.9em}"""


def _table(section) -> str:
    head = "".join(f'<th class="{"n" if c.kind != "text" else ""}">{html.escape(c.header)}</th>'
                   for c in section.columns)
    body = "".join("<tr>" + "".join(f'<td class="{"n" if c.kind != "text" else ""}">'
                                    f"{html.escape(format_value(row.get(c.key), c.kind))}</td>"
                                    for c in section.columns) + "</tr>" for row in section.rows)
    return f"<h2>{html.escape(section.title)}</h2><table><tr>{head}</tr>{body}</table>"


def intro(meta: dict) -> str:
    """The sentence above the charts: the total and its change, or that there is nothing to compare with."""
    total = f"Total {format_value(meta['total_usd'], 'usd')}"
    if meta.get("change") is None:
        return f"{total}; the previous window recorded no cost to compare with."
    return f"{total}, {meta['change'] * 100:+.1f}% against the previous window."


def render_html(document: Document, series: charts.ReportSeries) -> str:
    window = document.meta["window"]
    series.idle_share = charts.idle_by_model(document.sections[0].rows)
    figures = [("daily-cost", charts.daily_figure(series)), ("cost-per-1k", charts.per_1k_figure(series)),
               ("idle-share", charts.idle_figure(series.idle_share))]
    blocks = "".join(f'<div class="chart" id="{name}">{charts.svg(figure)}</div>' for name, figure in figures)
    tables = "".join(_table(s) for s in document.sections)
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in document.notes)
    title = f"ML cost report {window['start']} to {window['end']}"
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(intro(document.meta))}</p>"
            f"{blocks}{tables}{notes}</body></html>\n")


def write_html(path: str, document: Document, series: charts.ReportSeries) -> None:
    text = render_html(document, series)
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {path}: {exc.strerror or exc}") from None
