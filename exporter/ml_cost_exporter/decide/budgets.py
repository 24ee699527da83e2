"""`mlcost budgets`: every budget's period-to-date spend, forecast, burn rates, run-out date and firing alerts."""

from __future__ import annotations

import argparse
from collections import defaultdict

from ml_cost_exporter.decide.errors import EXIT_FINDING, EXIT_OK, UsageError
from ml_cost_exporter.decide.output import Column, Document, Section
from ml_cost_exporter.decide.promapi import alertmanager_alerts
from ml_cost_exporter.decide.timeparse import day, iso

EXAMPLE = """examples:
  mlcost budgets
  mlcost budgets --fail-at 90% --format json     # cron/CI: exits 1 when a budget is at 90 % or more"""
QUERY = '{__name__=~"budget:mlcost_budget_.+"}'  # every budget recording in one query
COLUMNS = (Column("budget", "BUDGET"), Column("spent_usd", "SPENT", "usd"), Column("limit_usd", "LIMIT", "usd"),
           Column("used", "USED", "pct"), Column("forecast_usd", "FORECAST", "usd"),
           Column("burn", "BURN 1H/6H/1D"), Column("runs_out", "RUNS OUT"))
ALERT_COLUMNS = (Column("budget", "BUDGET"), Column("alertname", "ALERT"), Column("severity", "SEVERITY"),
                 Column("summary", "SUMMARY"))
FIELDS = {
    "budget:mlcost_budget_spend_usd:period_to_date": "spent_usd",
    "budget:mlcost_budget_limit_usd:max": "limit_usd",
    "budget:mlcost_budget_spend_usd:forecast_period_end": "forecast_usd",
    "budget:mlcost_budget_burn:ratio_rate1h": "burn_1h",
    "budget:mlcost_budget_burn:ratio_rate6h": "burn_6h",
    "budget:mlcost_budget_burn:ratio_rate1d": "burn_1d",
    "budget:mlcost_budget_spend_usd:rate1h": "rate_usd_per_second",
    "budget:mlcost_budget_period_end_timestamp_seconds:max": "period_end",
    "budget:mlcost_budget_period_start_timestamp_seconds:max": "period_start",
}


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser("budgets", parents=parents, help="Budgets: spend, forecast, burn, alerts.",
                                   description="Every budget's period-to-date spend, limit, forecast, burn rates "
                                               "(1h, 6h, 1d), the day it runs out and the alerts firing about it.",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--at", help="Evaluation time (default now; RFC 3339, date or Unix seconds).")
    parser.add_argument("--fail-at", help="Exit 1 when a budget has used this much: a ratio (0.9) or a percent (90%%).")
    parser.add_argument("--no-alertmanager", action="store_true", help="Do not ask Alertmanager for alerts.")
    parser.set_defaults(handler=run)


def parse_fail_at(text: str | None) -> float | None:
    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f'--fail-at: "{text}" is not a ratio (0.9) or a percent (90%)') from None
    if not 0 < value <= 10:
        raise UsageError(f'--fail-at: "{text}" must be above 0 and at most 1000%')
    return value


def _runs_out(row: dict, at: float) -> str:
    """The day the money runs out at the last hour's spend rate, or "-" if not before the period ends."""
    rate, limit, spent = row.get("rate_usd_per_second"), row.get("limit_usd"), row.get("spent_usd")
    if limit is None or spent is None:
        return "-"
    if spent >= limit:
        return "spent"
    if not rate:
        return "-"
    when = at + (limit - spent) / rate
    end = row.get("period_end")
    if end is not None and when >= end:
        return "-"
    row["runs_out_at"] = iso(when)
    return day(when)


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    fail_at = parse_fail_at(args.fail_at)
    at = context.instant("--at")
    prometheus = context.prometheus()
    by_budget: dict[str, dict] = defaultdict(dict)
    for labels, value in prometheus.instant(QUERY, at):
        field = FIELDS.get(labels.get("__name__", ""))
        if field and labels.get("budget"):
            by_budget[labels["budget"]][field] = value
    prometheus.done()
    if not by_budget:
        raise UsageError(f"no budget recordings (budget:mlcost_budget_*) in Prometheus at {iso(at)}: "
                         "are the mlcost-budget rules loaded?")
    alerts: dict[str, list[str]] = defaultdict(list)
    alert_meta = []
    if not args.no_alertmanager:
        for alert in alertmanager_alerts(context.alertmanager()):
            if alert.labels.get("budget"):
                alerts[alert.labels["budget"]].append(f"{alert.name}({alert.severity or '-'})")
                alert_meta.append({"budget": alert.labels["budget"], "alertname": alert.name,
                                   "severity": alert.severity, "summary": alert.summary})
    rows, over = [], []
    for name in sorted(by_budget):
        row = {"budget": name, **by_budget[name]}
        if row.get("limit_usd") and row.get("spent_usd") is not None:
            row["used"] = row["spent_usd"] / row["limit_usd"]
        row["runs_out"] = _runs_out(row, at)
        row["alerts"] = sorted(alerts.get(name, []))
        row["burn"] = "/".join(f"{row[k]:.2f}" if row.get(k) is not None else "-"
                               for k in ("burn_1h", "burn_6h", "burn_1d"))
        if fail_at is not None and row.get("used") is not None and row["used"] >= fail_at:
            over.append(f"{name} {row['used'] * 100:.1f}%")
        rows.append(row)
    document = Document("budgets", {"at": iso(at), "fail_at": fail_at, "over": over, "alerts": alert_meta,
                                    "promql": QUERY})
    document.sections.append(Section("budgets", f"Budgets at {iso(at)}", COLUMNS, rows))
    if not args.no_alertmanager:
        document.sections.append(Section("alerts", "Alerts firing (Alertmanager)", ALERT_COLUMNS,
                                         sorted(alert_meta, key=lambda a: (a["budget"], a["alertname"]))))
    document.notes.append("BURN: spend rate / the rate the budget affords (1 = on track); RUNS OUT: at the last "
                          "hour's rate, if before the period ends")
    if over:
        return document, EXIT_FINDING, f"budget past --fail-at {fail_at * 100:g}%: {', '.join(over)}"
    return document, EXIT_OK, None
