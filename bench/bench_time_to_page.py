"""Time from the start of a runaway to the page, with the production rule timings.

promtool evaluates the real rule files every 15 s (prometheus.yml's
evaluation_interval) over spend sampled every 15 s: 3 hours on budget (1x),
then a runaway at the given multiple of the affordable rate. The first
evaluation at which MLCostBudgetBurnFast is firing, plus the pager route's
group_wait from the real alertmanager.yml, is the time to page.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STEP = 15  # seconds: scrape and evaluation interval of prometheus/prometheus.yml
BASELINE_STEPS = 720  # 3 hours on budget before the runaway
LIMIT, PERIOD = 2678.4, 2678400  # $0.001 a second affordable


def seconds(text: str) -> int:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", text))


def first_firing(multiple: float, horizon_minutes: int = 90) -> int | None:
    per_step = LIMIT / PERIOD * STEP
    runaway_start = BASELINE_STEPS * STEP
    total = BASELINE_STEPS + horizon_minutes * 60 // STEP
    after = per_step * BASELINE_STEPS + per_step * multiple
    series = (f"0+{per_step}x{BASELINE_STEPS} {after}+{per_step * multiple}x{total - BASELINE_STEPS}")
    gauges = {"mlcost_budget_limit_usd": LIMIT, "mlcost_budget_period_start_timestamp_seconds": 0,
              "mlcost_budget_period_end_timestamp_seconds": PERIOD}
    test = {
        "rule_files": [str(p) for p in sorted((REPO / "prometheus" / "rules").glob("*.yml"))],
        "evaluation_interval": f"{STEP}s",
        "tests": [{
            "interval": f"{STEP}s",
            "input_series": [{"series": f'{name}{{budget="b"}}', "values": f"{value}x{total}"}
                             for name, value in gauges.items()]
            + [{"series": 'mlcost_budget_current_period_info{budget="b",period="1970-01"}', "values": f"1x{total}"},
               {"series": 'mlcost_budget_spend_usd_total{budget="b",period="1970-01"}', "values": series}],
            "alert_rule_test": [{"eval_time": f"{t}s", "alertname": "MLCostBudgetBurnFast", "exp_alerts": []}
                                for t in range(runaway_start, total * STEP + 1, STEP)],
        }],
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "time-to-page.test.yml"
        path.write_text(yaml.safe_dump(test))
        result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
        output = result.stdout + result.stderr  # promtool reports failures, here the firing times, on stderr
    firing = [seconds(m) for m in re.findall(r"alertname: MLCostBudgetBurnFast, time: ([0-9hms]+),", output)]
    return min(firing) - runaway_start if firing else None


def main() -> None:
    alertmanager = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    pager = next(r for r in alertmanager["route"]["routes"] if r["receiver"] == "pager")
    group_wait = seconds(pager["group_wait"])
    for multiple, goal_minutes in ((100.0, 10), (14.4, 65)):
        fired = first_firing(multiple)
        if fired is None:
            print(f"time-to-page: {multiple:g}x: not firing within 90 minutes (goal <= {goal_minutes} min)")
            continue
        total = fired + group_wait
        print(f"time-to-page: {multiple:g}x the affordable rate: firing after {fired / 60:.2f} min, "
              f"page after {total / 60:.2f} min with group_wait {group_wait}s (goal <= {goal_minutes} min)")


if __name__ == "__main__":
    sys.exit(main())
