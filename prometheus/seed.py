"""Writes the budget rules' first hourly checkpoint from the raw counters in Prometheus, as OpenMetrics.

For rules deployed in the middle of a period (docs/rules.md#deploying-the-rules-mid-period): the checkpoint
(`budget_period:mlcost_budget_spend_usd:period_to_date_hourly`) and each counter series' snapshot
(`series:mlcost_budget_spend_usd:at_hour`), one second before the last whole hour, so that the rules'
next hourly run goes on from them. Load the output with `promtool tsdb create-blocks-from openmetrics`
(or import it into VictoriaMetrics) before starting the rules.

Run: python prometheus/seed.py --prometheus.url http://prometheus:9090 > seed.om
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
import urllib.request

COUNTER = "mlcost_budget_spend_usd_total"
# Each series' latest value in the period so far (92 days covers a quarter). A counter that reset counts
# its last life only: seed right after the rules' rollout, not after exporter restarts without storage.
CHECKPOINT = ("budget_period:mlcost_budget_spend_usd:period_to_date_hourly",
              f"sum by (budget, period) (last_over_time({COUNTER}[92d]))")
SNAPSHOT = ("series:mlcost_budget_spend_usd:at_hour", f"last_over_time({COUNTER}[26h])")


def query(url: str, expr: str, at: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "time": at})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=300) as response:
        return json.load(response)["data"]["result"]


def openmetrics_lines(name: str, results: list[dict], at: int) -> list[str]:
    lines = [f"# TYPE {name} gauge"]
    for result in results:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(result["metric"].items()) if k != "__name__")
        lines.append(f"{name}{{{labels}}} {result['value'][1]} {at}")
    return lines


def seed(url: str, at: int) -> str:
    """The OpenMetrics text of the checkpoint and snapshots at `at` (Unix seconds)."""
    lines = []
    for name, expr in (CHECKPOINT, SNAPSHOT):
        lines += openmetrics_lines(name, query(url, expr, at), at)
    return "\n".join([*lines, "# EOF"]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus.url", dest="url", default="http://localhost:9090")
    parser.add_argument("--at", type=int, help="Unix seconds (default: one second before the last whole hour)")
    args = parser.parse_args()
    at = args.at if args.at is not None else int(time.time()) // 3600 * 3600 - 1
    print(seed(args.url.rstrip("/"), at), end="")


if __name__ == "__main__":
    main()
