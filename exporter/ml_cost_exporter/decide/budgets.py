"""`mlcost budgets`: every budget's period-to-date spend, forecast, burn rates, run-out date and firing alerts."""

from __future__ import annotations

import argparse
from collections import defaultdict

from ml_cost_exporter.cost.periods import Period, period_at
from ml_cost_exporter.decide.errors import EXIT_FINDING, EXIT_OK, PeerError, UsageError
from ml_cost_exporter.decide.output import Column, Document, Section
from ml_cost_exporter.decide.promapi import Prometheus, alertmanager_alerts
from ml_cost_exporter.decide.timeparse import day, iso

EXAMPLE = """examples:
  mlcost budgets
  mlcost budgets --fail-at 90% --format json     # cron/CI: exits 1 when a budget is at 90 % or more"""
QUERY = '{__name__=~"budget:mlcost_budget_.+"}'  # every budget recording in one query
LOOKBACK = 93 * 86400  # how far back a budget without a recording now is looked for (a quarter)
KNOWN = f"max by (budget) (max_over_time(budget:mlcost_budget_limit_usd:max[{LOOKBACK}s]))"
PERIOD_KINDS = ((86400, "day"), (7 * 86400, "week"), (31 * 86400, "month"), (92 * 86400, "quarter"))
COLUMNS = (Column("budget", "BUDGET"), Column("spent_usd", "SPENT", "usd"), Column("limit_usd", "LIMIT", "usd"),
           Column("used", "USED", "pct"), Column("forecast_usd", "FORECAST", "usd"),
           Column("burn", "BURN 1H/6H/1D"), Column("runs_out", "RUNS OUT"))
ALERT_COLUMNS = (Column("budget", "BUDGET"), Column("alertname", "ALERT"), Column("severity", "SEVERITY"),
                 Column("summary", "SUMMARY", wrap=True))
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


def _last(prometheus: Prometheus, selector: str, at: float, seconds: float) -> float | None:
    """The last value of `selector` (summed over its series) in the `seconds` before `at`."""
    rows = prometheus.instant(f"sum(last_over_time({selector}[{max(int(seconds), 1)}s]))", at)
    return rows[0][1] if rows else None


def _period(prometheus: Prometheus, name: str, kind: str | None, at: float) -> Period | None:
    """The budget's period at `at`: from its config, else from the bounds it last recorded."""
    if kind:
        return period_at(kind, at)
    start = _last(prometheus, f'budget:mlcost_budget_period_start_timestamp_seconds:max{{budget="{name}"}}', at,
                  LOOKBACK)
    end = _last(prometheus, f'budget:mlcost_budget_period_end_timestamp_seconds:max{{budget="{name}"}}', at,
                LOOKBACK)
    if start is None or end is None:
        return None
    return period_at(_kind_of(end - start), at)


def _kind_of(length: float) -> str:
    for most, kind in PERIOD_KINDS:
        if length <= most:
            return kind
    return "job"


def settled_row(prometheus: Prometheus, name: str, budget, at: float) -> dict:
    """A budget with no recording at `at` (its pods are gone): its spend this period from history."""
    period = _period(prometheus, name, budget.period if budget else None, at)
    limit = budget.amount_usd if budget else _last(prometheus, f'budget:mlcost_budget_limit_usd:max{{budget="{name}"}}',
                                                   at, LOOKBACK)
    row: dict = {"limit_usd": limit, "state": "idle", "rate_usd_per_second": 0.0}
    if period is None:
        return row
    since = min(at - period.start, LOOKBACK)
    row.update(period_start=period.start, period_end=period.end, period=period.label)
    recorded_start = _last(prometheus, f'budget:mlcost_budget_period_start_timestamp_seconds:max{{budget="{name}"}}',
                           at, since)
    spent = None
    if recorded_start == period.start:  # the period-to-date the rules recorded last, this period
        spent = _last(prometheus, f'budget:mlcost_budget_spend_usd:period_to_date{{budget="{name}"}}', at, since)
        row["spent_from"] = "budget:mlcost_budget_spend_usd:period_to_date"
    if spent is None:  # the exporters' counters: each pod's spend within the period, from zero
        spent = _last(prometheus, f'mlcost_budget_spend_usd_total{{budget="{name}",period="{period.label}"}}',
                      at, since)
        row["spent_from"] = "mlcost_budget_spend_usd_total"
    row["spent_usd"] = spent if spent is not None else (0.0 if budget else None)
    return row


def _known_budgets(prometheus: Prometheus, config, at: float, active: dict) -> dict[str, dict]:
    """Every budget: recorded now, recorded earlier this quarter, or in the config."""
    configured = {b.name: b for b in config.budgets}
    names = set(active) | set(configured)
    names |= {labels["budget"] for labels, _ in prometheus.instant(KNOWN, at) if labels.get("budget")}
    out = {}
    for name in sorted(names):
        if name in active:
            out[name] = {**active[name], "state": "active"}
        else:
            out[name] = settled_row(prometheus, name, configured.get(name), at)
    return out


def _alerts(context) -> tuple[dict[str, list[str]], list[dict], str | None]:
    """Alerts by budget from Alertmanager, or a warning when it cannot be reached (budgets still show)."""
    alerts: dict[str, list[str]] = defaultdict(list)
    meta = []
    try:
        fetched = alertmanager_alerts(context.alertmanager())
    except PeerError as exc:
        return alerts, meta, f"warning: alerts not shown: {exc}"
    for alert in fetched:
        if alert.labels.get("budget"):
            alerts[alert.labels["budget"]].append(f"{alert.name}({alert.severity or '-'})")
            meta.append({"budget": alert.labels["budget"], "alertname": alert.name,
                         "severity": alert.severity, "summary": alert.summary})
    return alerts, meta, None


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    fail_at = parse_fail_at(args.fail_at)
    at = context.instant("--at")
    prometheus = context.prometheus()
    active: dict[str, dict] = defaultdict(dict)
    for labels, value in prometheus.instant(QUERY, at):
        field = FIELDS.get(labels.get("__name__", ""))
        if field and labels.get("budget"):
            active[labels["budget"]][field] = value
    by_budget = _known_budgets(prometheus, context.config, at, active)
    prometheus.done()
    if not by_budget:
        raise UsageError(f"no budget recordings (budget:mlcost_budget_*) in Prometheus at {iso(at)} and no "
                         "budgets in --config.file: are the mlcost-budget rules loaded?")
    warning = None
    alerts: dict[str, list[str]] = defaultdict(list)
    alert_meta: list[dict] = []
    if not args.no_alertmanager:
        alerts, alert_meta, warning = _alerts(context)
    rows, over = [], []
    for name in sorted(by_budget):
        row = {"budget": name, **by_budget[name]}
        if row.get("limit_usd") and row.get("spent_usd") is not None:
            row["used"] = row["spent_usd"] / row["limit_usd"]
        row["runs_out"] = _runs_out(row, at)
        row["alerts"] = sorted(alerts.get(name, []))
        row["burn"] = "idle" if row.get("state") == "idle" else "/".join(
            f"{row[k]:.2f}" if row.get(k) is not None else "-" for k in ("burn_1h", "burn_6h", "burn_1d"))
        if fail_at is not None and row.get("used") is not None and row["used"] >= fail_at:
            over.append(f"{name} {row['used'] * 100:.1f}%")
        rows.append(row)
    document = Document("budgets", {"at": iso(at), "fail_at": fail_at, "over": over, "alerts": alert_meta,
                                    "alertmanager_error": warning, "promql": QUERY})
    document.sections.append(Section("budgets", f"Budgets at {iso(at)}", COLUMNS, rows))
    if not args.no_alertmanager and warning is None:
        document.sections.append(Section("alerts", "Alerts firing (Alertmanager)", ALERT_COLUMNS,
                                         sorted(alert_meta, key=lambda a: (a["budget"], a["alertname"]))))
    document.notes.append("BURN: spend rate / the rate the budget affords (1 = on track); RUNS OUT: at the last "
                          "hour's rate, if before the period ends; idle: nothing recorded now (its pods are gone), "
                          "SPENT from the period's history")
    messages = [warning] if warning else []
    if over:
        messages.append(f"budget past --fail-at {fail_at * 100:g}%: {', '.join(over)}")
    return document, EXIT_FINDING if over else EXIT_OK, "; ".join(messages) or None
