"""The exporter killed with SIGKILL under real Prometheus with --storage.path: no reset, no money lost."""

import json
import signal
import time

import pytest

from bench.bench_restarts import COST_COUNTERS, Stack


def test_sigkilled_exporter_continues_its_counters_and_accrues_its_downtime(tmp_path):
    stack = Stack(tmp_path, storage=True)
    try:
        first_launch = stack.start_exporter()
        first_up = time.time()
        for up, down in ((1.0, 1.5), (0.7, 2.0), (1.3, 1.0)):
            time.sleep(up)  # the life and the downtime are what is measured, not a synchronisation
            stack.kill_exporter()
            time.sleep(down)
            stack.start_exporter()
        time.sleep(1.5)
        window = f"{int(time.time() - first_launch) + 30}s"
        last_scrape = float(stack.query("max(timestamp(mlcost_usd_total))")[0]["value"][1])
        for name in COST_COUNTERS:
            result = stack.query(f"sum(resets({name}[{window}]))", last_scrape)
            assert result and float(result[0]["value"][1]) == 0, f"{name} was reset"
        seen = float(stack.query(f"sum(increase(mlcost_usd_total[{window}]))", last_scrape)[0]["value"][1])
        hourly = float(stack.query("sum(mlcost_hourly_usd)")[0]["value"][1])
        stack.exporter.send_signal(signal.SIGTERM)  # a clean stop writes a last checkpoint up to now
        assert stack.exporter.wait(20) == 0
        stopped = time.time()
    finally:
        stack.stop()
    ledger = json.loads((tmp_path / "state" / "mlcost-checkpoint.json").read_text())["sections"]["ledger"]
    assert first_launch <= ledger["since"] <= first_up and ledger["accrued_until"] <= stopped
    accrued = sum(row[4] for row in ledger["usd"])
    lived = ledger["accrued_until"] - ledger["since"]
    assert lived > 9  # three lives of about a second and 4.5 s down, plus start-ups
    assert accrued == pytest.approx(hourly * lived / 3600, rel=1e-3)  # the downtime is in, to 0.1 %
    # Prometheus's increase() misses only the cost before its first scrape of the first life (< 1.5 s).
    expected = hourly * (last_scrape - ledger["since"]) / 3600
    assert expected * (1 - 1.5 / lived) <= seen <= expected * 1.001
