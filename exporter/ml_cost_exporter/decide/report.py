"""`mlcost report`: what was spent over a window, grouped by any label, against the previous window."""

from __future__ import annotations

import argparse
from collections import defaultdict

from ml_cost_exporter.decide.anomalies import anomalous_days
from ml_cost_exporter.decide.errors import EXIT_OK, UsageError
from ml_cost_exporter.decide.history import History, group, window_from
from ml_cost_exporter.decide.output import Column, Document, Section
from ml_cost_exporter.decide.timeparse import iso, promql_duration

EXAMPLE = """examples:
  mlcost report --since 30d
  mlcost report --since 7d --until 2026-03-29 --by team,resource --format markdown
  mlcost report --since 30d --format html --output report.html --chart cost.png"""
JOULES_PER_KWH = 3.6e6
_LABEL_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser("report", parents=parents, help="Report what was spent over a window.",
                                   description="What was spent over a window (UTC), by model or any label, with "
                                               "the change against the previous window of the same length.",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", default="30d", help="Window length ending at --until (default 30d).")
    parser.add_argument("--until", help="End of the window (default now; RFC 3339, date or Unix seconds).")
    parser.add_argument("--by", default="model", help="Comma-separated labels to group by: model, version, "
                                                      "workload, resource, team or any attribution label.")
    parser.add_argument("--data", choices=("auto", "recorded", "raw"), default="auto",
                        help="Read the model:*:increase1h recordings, the raw counters, or the recordings where "
                             "they cover the window (default auto).")
    parser.add_argument("--output", help="Write the report to this file instead of stdout (needed for html).")
    parser.add_argument("--chart", help="Also write the daily cost chart to this PNG file.")
    parser.set_defaults(handler=run)


def _by(text: str) -> tuple[str, ...]:
    labels = tuple(p.strip() for p in text.split(",") if p.strip())
    if not labels or any(not set(p) <= _LABEL_OK or p[0].isdigit() for p in labels):
        raise UsageError(f'--by: "{text}" is not a comma-separated list of label names')
    return labels


def collect(history: History, by: tuple[str, ...], config=None) -> dict:
    """Every figure of the report, as plain data (shared by the table, JSON and HTML renderings)."""
    window = history.window
    tenants = "tenant" in by  # cost split by the gateway's tenants (mlcost_tenant_usd_total)
    cost_kind = "tenant_usd" if tenants else "usd"
    usd = history.totals(cost_kind)
    if not usd:
        what = "tenant cost (mlcost_tenant_usd_total)" if tenants else "cost"
        raise UsageError(f"no {what} recorded between {iso(window.start)} and {iso(window.end)} "
                         f"(is Prometheus scraping the exporter? is --until right?)")
    labels = labels_with_config(history.model_labels(), usd, config)
    previous = group(history.totals(cost_kind, window.previous()), by, labels)
    idle = {} if tenants else group(history.totals("idle"), by, labels)
    per_model = "resource" not in by and not tenants  # figures that are not split by resource or tenant
    requests = group(history.totals("requests"), by, labels) if per_model else {}
    tokens = group(history.totals("tokens"), by, labels) if per_model else {}
    energy = group(history.totals("energy"), by, labels) if per_model else {}
    carbon = group(history.totals("carbon"), by, labels) if per_model else {}
    inference = group([(s, v) for s, v in usd if tenants or s.get("workload") == "inference"], by, labels)
    cost = group(usd, by, labels)
    rows = []
    for key, total in sorted(cost.items(), key=lambda kv: -kv[1]):
        served = requests.get(key)
        before = previous.get(key)
        idle_usd = None if tenants else idle.get(key, 0.0)
        rows.append({**dict(zip(by, key, strict=True)), "group": " ".join(k or "-" for k in key),
                     "cost_usd": total, "previous_usd": before,
                     "change": (total - before) / before if before else None,
                     "requests": served, "tokens": tokens.get(key),
                     "cost_per_1k_usd": inference.get(key, 0.0) / served * 1000 if served else None,
                     "idle_usd": idle_usd, "idle_share": idle_usd / total if total and idle_usd is not None else None,
                     "energy_kwh": energy[key] / JOULES_PER_KWH if key in energy else None,
                     "carbon_kg": carbon[key] / 1000 if key in carbon else None})
    grand, before = sum(cost.values()), sum(previous.values())
    return {"rows": rows, "total_usd": grand, "previous_usd": before,
            "change": (grand - before) / before if before else None,
            "idle_usd": None if tenants else sum(idle.values()),
            "requests": sum(requests.values()) if requests else None,
            "energy_kwh": sum(energy.values()) / JOULES_PER_KWH if energy else None,
            "carbon_kg": sum(carbon.values()) / 1000 if carbon else None,
            "model_labels": labels, "usd_series": usd}


def budget_rows(history: History, config, data: dict) -> list[dict]:
    """Each budget's spend in the window: its models' cost, its share of all spend, its limit per period."""
    window = history.window
    members: dict[str, set[tuple[str, str]]] = defaultdict(set)
    info = f"max_over_time(mlcost_budget_info[{promql_duration(window.seconds)}])"
    for labels, _ in history.prometheus.instant(info, window.end):
        members[labels.get("budget", "")].add((labels.get("model", ""), labels.get("version", "")))
    for budget in config.budgets:  # the config's selectors where Prometheus has no mlcost_budget_info
        if budget.name not in members:
            for key, model_labels in data["model_labels"].items():
                if (not budget.selector.models or key[0] in budget.selector.models) and all(
                        model_labels.get(k) == v for k, v in budget.selector.labels.items()):
                    members[budget.name].add(key)
    if not members:
        return []
    configured = {b.name: b.amount_usd for b in config.budgets}  # where the budget rules record no limit
    limits = {lab.get("budget"): v for lab, v in history.prometheus.instant("budget:mlcost_budget_limit_usd:max",
                                                                            window.end)}
    rows = []
    for name in sorted(members):
        spent = sum(v for s, v in data["usd_series"] if (s.get("model"), s.get("version")) in members[name])
        rows.append({"budget": name, "spent_usd": spent,
                     "share": spent / data["total_usd"] if data["total_usd"] else None,
                     "limit_usd": limits.get(name, configured.get(name))})
    return rows


def labels_with_config(labels: dict, usd_series, config) -> dict[tuple[str, str], dict[str, str]]:
    """Every costed model version's attribution labels: mlcost_model_info's, else its --config.file entry's."""
    configured: dict[tuple[str, str], dict[str, str]] = {}
    for model in config.models if config else ():
        configured[(model.name, model.version)] = dict(model.labels)
        configured.setdefault((model.name, ""), dict(model.labels))  # any version of a configured model
    out = dict(labels)
    for series, _ in usd_series:
        key = (series.get("model", ""), series.get("version", ""))
        if not out.get(key):
            out[key] = configured.get(key) or configured.get((key[0], ""), {})
    return out


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    by = _by(args.by)
    if args.format == "html" and not args.output:
        raise UsageError("--format html needs --output FILE")
    window = window_from(context)
    prometheus = context.prometheus()
    history = History(prometheus, window, args.data)
    data = collect(history, by, context.config)
    budgets = budget_rows(history, context.config, data)
    document = build_document(history, by, data, budgets)
    anomalies, note = anomalous_days(prometheus, window)
    if anomalies is not None:
        document.sections.append(anomalies)
    document.notes.append(note)
    if args.chart or args.format == "html":
        from ml_cost_exporter.decide import charts

        series = charts.report_series(history)
        if args.chart:
            charts.write_daily_png(series, args.chart)
        if args.format == "html":
            from ml_cost_exporter.decide.html import write_html

            write_html(args.output, document, series)
    prometheus.done()
    document.meta["queries"] = prometheus.queries
    if args.output and args.format != "html":
        from ml_cost_exporter.decide.output import render

        _write(args.output, render(document, args.format))
    if args.output:
        return document, EXIT_OK, f"wrote {args.output}"
    return document, EXIT_OK, None


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {path}: {exc.strerror or exc}") from None


def build_document(history: History, by: tuple[str, ...], data: dict, budgets: list[dict]) -> Document:
    window = history.window
    meta = {"window": {"start": iso(window.start), "end": iso(window.end), "seconds": window.seconds},
            "by": list(by), "data_source": "recorded" if history.recorded else "raw",
            "total_usd": data["total_usd"], "previous_usd": data["previous_usd"], "change": data["change"],
            "idle_usd": data["idle_usd"], "requests": data["requests"], "energy_kwh": data["energy_kwh"],
            "carbon_kg": data["carbon_kg"], "promql": history.promql}
    document = Document("report", meta)
    columns = [Column("group", " ".join(b.upper() for b in by)), Column("cost_usd", "COST", "usd"),
               Column("change", "VS PREV", "pct")]
    if data["requests"] is not None:
        columns += [Column("requests", "REQUESTS", "int"), Column("cost_per_1k_usd", "$/1K", "usd")]
    if data["idle_usd"] is not None:
        columns += [Column("idle_usd", "IDLE", "usd"), Column("idle_share", "IDLE%", "pct")]
    if data["energy_kwh"] is not None:
        columns += [Column("energy_kwh", "KWH", "num"), Column("carbon_kg", "KG CO2E", "num")]
    title = f"Spend {iso(window.start)} to {iso(window.end)}"
    idle = data["idle_usd"]
    rows = [*data["rows"], {"group": "TOTAL", "cost_usd": data["total_usd"], "change": data["change"],
                            "requests": data["requests"], "idle_usd": idle,
                            "idle_share": idle / data["total_usd"] if data["total_usd"] and idle is not None else None,
                            "cost_per_1k_usd": None, "energy_kwh": data["energy_kwh"],
                            "carbon_kg": data["carbon_kg"]}]
    document.sections.append(Section("rows", title, columns, rows))
    document.sections[0].rows[-1]["tokens"] = None
    if budgets:
        document.sections.append(Section("budgets", "Budgets in this window", (
            Column("budget", "BUDGET"), Column("spent_usd", "SPENT", "usd"), Column("share", "OF TOTAL", "pct"),
            Column("limit_usd", "LIMIT/PERIOD", "usd")), budgets))
    document.notes.append(history.source_note())
    return document

