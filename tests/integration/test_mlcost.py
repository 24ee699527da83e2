"""`mlcost` against real Prometheus and Alertmanager holding a backfilled month (harness/mlcost_history)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import mlcost_history
from ml_cost_exporter.decide.main import main
from tests.conftest import FIXTURES, free_port, wait_until
from tests.support.binaries import Processes
from tests.support.http import Reply

GOLDEN = FIXTURES / "golden" / "mlcost"
WINDOW = ["--since", "14d", "--until", "2026-04-01"]
MONTH = 730 * 3600 / (14 * 86400)  # the 14-day window scaled to a month


@contextlib.contextmanager
def _serving(root: Path, data: Path) -> Iterator[dict[str, str]]:
    """Prometheus on the backfilled blocks `data` and an Alertmanager, on loopback."""
    (root / "prometheus.yml").write_text("global: {}\n")
    (root / "alertmanager.yml").write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    processes = Processes(root)
    prom_port, am_port, cluster_port = free_port(), free_port(), free_port()
    processes.start("prometheus", ["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=50y",
                                   f"--web.listen-address=127.0.0.1:{prom_port}"])
    processes.start("alertmanager", ["prometheus-alertmanager", f"--config.file={root / 'alertmanager.yml'}",
                                     f"--storage.path={root / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                     f"--cluster.listen-address=127.0.0.1:{cluster_port}"])
    urls = {"prometheus": f"http://127.0.0.1:{prom_port}", "alertmanager": f"http://127.0.0.1:{am_port}"}
    try:
        wait_until(lambda: requests.get(f"{urls['prometheus']}/-/ready", timeout=1).ok, 60, what="Prometheus")
        wait_until(lambda: requests.get(f"{urls['alertmanager']}/-/ready", timeout=1).ok, what="Alertmanager")
        yield urls
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One Prometheus on the backfilled month (recordings stamped at hh:07) and one Alertmanager, shared here."""
    root = tmp_path_factory.mktemp("mlcost")
    with _serving(root, mlcost_history.create_blocks(root / "tsdb", recorded=True)) as urls:
        yield urls


def mlcost(stack: dict[str, str] | None, capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    environ = {"MLCOST_PROMETHEUS_URL": stack["prometheus"], "MLCOST_ALERTMANAGER_URL": stack["alertmanager"]} \
        if stack else {}
    status = main(list(argv), environ)
    out, err = capsys.readouterr()
    if "--format" not in argv or "table" in argv:
        assert all(len(line) <= 80 for line in out.splitlines()), out
    return status, out, err


def report_json(stack, capsys, *argv: str) -> dict:
    status, out, err = mlcost(stack, capsys, "report", "--format", "json", *argv)
    assert status == 0, err
    return json.loads(out)


def test_report_sums_recorded_series_over_the_window(stack, capsys) -> None:
    body = report_json(stack, capsys, *WINDOW)
    rows = {r["model"]: r for r in body["rows"] if r["group"] != "TOTAL"}
    assert body["meta"]["data_source"] == "recorded"
    assert rows["chat"]["cost_usd"] == pytest.approx(2 * 5.0 * 14 * 24)
    assert rows["embed"]["cost_usd"] == pytest.approx(5.0 * 14 * 24)
    assert rows["trainer"]["cost_usd"] == pytest.approx(55.04 * 48)
    assert rows["chat"]["requests"] == pytest.approx(10 * 7 * 86400 + 4 * 7 * 86400)
    assert rows["chat"]["tokens"] == pytest.approx(200 * (10 * 7 * 86400 + 4 * 7 * 86400))
    # idle: 40 % of the GPU's $4.50/h for v1's week, 70 % for v2's, on two pods
    assert rows["chat"]["idle_usd"] == pytest.approx(2 * 4.5 * 168 * (0.4 + 0.7))
    assert rows["embed"]["idle_usd"] == pytest.approx(14 * 4.5 * (18 * 0.85 + 6))
    assert rows["chat"]["cost_per_1k_usd"] == pytest.approx(3360 / (14 * 7 * 86400) * 1000)
    assert body["meta"]["total_usd"] == pytest.approx(3360 + 1680 + 55.04 * 48)
    # the previous window (03-04 to 03-18) predates the recordings: it came from the raw counters
    assert rows["embed"]["change"] == pytest.approx(0.0, abs=1e-6)
    assert rows["trainer"]["change"] is None
    assert "previous window from raw counters" in body["notes"][0]


def test_report_falls_back_to_raw_counters_before_the_recordings_exist(stack, capsys) -> None:
    body = report_json(stack, capsys, "--since", "7d", "--until", "2026-03-11", "--by", "team")
    rows = {r["team"]: r for r in body["rows"] if r["group"] != "TOTAL"}
    assert body["meta"]["data_source"] == "raw"
    assert "increase(mlcost_usd_total[7d])" in body["meta"]["promql"]["usd"]
    assert rows["search"]["cost_usd"] == pytest.approx(10.0 * 7 * 24)
    assert rows["search"]["cost_per_1k_usd"] == pytest.approx(10.0 / 36.0)
    assert rows["ads"]["requests"] == pytest.approx(2 * 18 * 3600 * 7)
    assert set(rows) == {"search", "ads"}  # the trainer ran later


def _report_figures(stack, capsys, data: str, *window: str) -> dict[str, dict]:
    body = report_json(stack, capsys, *window, "--data", data)
    assert body["meta"]["data_source"] == data
    return {r["group"]: r for r in body["rows"]}


FIGURES = ("cost_usd", "requests", "tokens", "cost_per_1k_usd", "idle_usd")


@pytest.mark.parametrize("window", [("--since", "12h", "--until", "2026-03-28T12:00:00Z"),
                                    ("--since", "5h", "--until", "2026-03-21T04:00:00Z"),
                                    ("--since", "3d", "--until", "2026-03-31T06:00:00Z")])
def test_recorded_path_equals_raw_path_on_whole_hours(stack, capsys, window: tuple[str, ...]) -> None:
    """The hourly recordings are stamped at hh:07; a window of whole hours reads the same figures either way."""
    recorded = _report_figures(stack, capsys, "recorded", *window)
    raw = _report_figures(stack, capsys, "raw", *window)
    assert set(recorded) == set(raw)
    for group, row in raw.items():
        for figure in FIGURES:
            if row[figure] is None:
                assert recorded[group][figure] is None, (group, figure)
            else:
                assert recorded[group][figure] == pytest.approx(row[figure], rel=1e-6), (group, figure)


@pytest.mark.parametrize("minute", [0, 25])
def test_recordings_read_the_same_whatever_minute_they_are_stamped(tmp_path: Path, capsys, minute: int) -> None:
    """Stamped at hh:00 or hh:25, a recording holds the clock hour that ended at hh:00: whole hours read what the
    raw counters read."""
    day = mlcost_history.END - 2 * 86400
    data = mlcost_history.create_blocks(tmp_path / "tsdb", recorded=True, start_time=day, rules_from=day,
                                        rule_minute=minute * 60.0)
    window = ("--since", "12h", "--until", "2026-03-31T12:00:00Z")
    with _serving(tmp_path, data) as urls:
        recorded = _report_figures(urls, capsys, "recorded", *window)
        raw = _report_figures(urls, capsys, "raw", *window)
    assert recorded["embed"]["requests"] == pytest.approx(2 * 6 * 3600)  # 06:00-12:00
    assert recorded["embed"]["cost_per_1k_usd"] == pytest.approx(60 / 43.2)
    for figure in FIGURES:
        assert recorded["TOTAL"][figure] == pytest.approx(raw["TOTAL"][figure], rel=1e-6), figure


@pytest.mark.parametrize("data", ["recorded", "raw"])
def test_report_by_tenant_splits_cost_by_the_gateways_tenants(stack, capsys, data: str) -> None:
    body = report_json(stack, capsys, *WINDOW, "--by", "tenant", "--data", data)
    rows = {r["group"]: r for r in body["rows"]}
    assert rows["acme"]["cost_usd"] == pytest.approx(0.7 * 3360) and rows["globex"]["cost_usd"] == pytest.approx(
        0.3 * 3360)
    assert rows["TOTAL"]["idle_usd"] is None and body["meta"]["requests"] is None


def test_report_shows_energy_and_carbon_where_the_series_exist(stack, capsys) -> None:
    body = report_json(stack, capsys, *WINDOW)
    rows = {r["group"]: r for r in body["rows"]}
    assert rows["chat"]["energy_kwh"] == pytest.approx(2 * 336 * 0.25)  # two pods at 250 W for 14 days
    assert rows["chat"]["carbon_kg"] == pytest.approx(2 * 336 * 0.25 * 0.4)
    assert rows["embed"]["energy_kwh"] is None and rows["TOTAL"]["energy_kwh"] == pytest.approx(168)
    status, out, _ = mlcost(stack, capsys, "report", *WINDOW)
    assert status == 0 and out.splitlines()[1].endswith("KWH  KG CO2E")


def test_report_budget_shares_follow_the_config_selectors(stack, capsys, tmp_path: Path) -> None:
    config = tmp_path / "pricing.yaml"
    config.write_text("models:\n  - {name: chat, version: v2, labels: {team: search}}\n"
                      "budgets:\n  - {name: search-monthly, amount_usd: 20000, selector: {team: search}}\n")
    body = report_json(stack, capsys, *WINDOW, "--config.file", str(config))
    budget = body["budgets"][0]
    assert budget["budget"] == "search-monthly"
    assert budget["spent_usd"] == pytest.approx(3360)
    assert budget["share"] == pytest.approx(3360 / (5040 + 55.04 * 48))
    assert budget["limit_usd"] == pytest.approx(20000)


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_report_golden_outputs(stack, capsys, update_golden: bool, fmt: str) -> None:
    status, out, _ = mlcost(stack, capsys, "report", *WINDOW, "--by", "team,version", "--format", fmt)
    assert status == 0
    golden = GOLDEN / f"report.{ 'md' if fmt == 'markdown' else 'txt' if fmt == 'table' else fmt}"
    if update_golden:
        golden.write_text(out)
    assert out == golden.read_text()


def test_html_report_renders_its_charts_in_chromium(stack, capsys, tmp_path: Path) -> None:
    page, chart = tmp_path / "report.html", tmp_path / "cost.png"
    status, out, err = mlcost(stack, capsys, "report", *WINDOW, "--format", "html", "--output", str(page),
                              "--chart", str(chart))
    assert status == 0 and out == "" and "wrote" in err
    text = page.read_text()
    assert text.count("<svg") == 3 and "<script" not in text and "src=" not in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by scripts/setup.sh"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for chart_id in ("daily-cost", "cost-per-1k", "idle-share"):
        assert f'id="{chart_id}"><svg' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20000  # a blank page is a few kB


def _post_alert(stack, budget: str, name: str, severity: str) -> None:
    alert = [{"labels": {"alertname": name, "budget": budget, "severity": severity},
              "annotations": {"summary": f"{budget} {name}"}, "startsAt": "2026-03-21T11:00:00Z"}]
    requests.post(f"{stack['alertmanager']}/api/v2/alerts", json=alert, timeout=5).raise_for_status()


def test_budgets_show_recordings_runout_and_alertmanager_alerts(stack, capsys) -> None:
    _post_alert(stack, "research-daily", "MLCostBudgetBurnSlow", "warning")
    wait_until(lambda: requests.get(f"{stack['alertmanager']}/api/v2/alerts", timeout=1).json(), what="the alert")
    status, out, err = mlcost(stack, capsys, "budgets", "--at", "2026-03-21T12:00:00Z", "--format", "json")
    assert status == 0, err
    body = json.loads(out)
    rows = {r["budget"]: r for r in body["budgets"]}
    assert rows["search-monthly"]["spent_usd"] == pytest.approx(10.0 * 17.5 * 24)
    assert rows["search-monthly"]["forecast_usd"] == pytest.approx(4200 / 20.5 * 31)
    assert rows["search-monthly"]["burn_1h"] == pytest.approx((10 / 3600) / (20000 / (31 * 86400)))
    assert rows["search-monthly"]["runs_out"] == "-"  # not before the month ends
    assert rows["research-daily"]["used"] == pytest.approx(55.04 * 12 / 1000)
    assert rows["research-daily"]["runs_out_at"] == "2026-03-21T18:10:06Z"
    assert rows["research-daily"]["alerts"] == ["MLCostBudgetBurnSlow(warning)"]
    assert rows["search-monthly"]["alerts"] == []


@pytest.mark.parametrize(("fail_at", "over"), [("60%", ["research-daily 66.0%", "trainer-job 89.9%"]),
                                              ("0.7", ["trainer-job 89.9%"]), ("0.95", []), ("1", [])])
def test_budgets_fail_at_gates_cron_jobs(stack, capsys, fail_at: str, over: list[str]) -> None:
    code, _, err = mlcost(stack, capsys, "budgets", "--at", "2026-03-21T12:00:00Z", "--fail-at", fail_at)
    assert code == (1 if over else 0)
    assert err == (f"mlcost: budget past --fail-at {float(fail_at.rstrip('%')) * (1 if '%' in fail_at else 100):g}%: "
                   f"{', '.join(over)}\n" if over else "")


JOB_SPENT = 55.04 * (48 - 1 / 6)  # the trainer's last sample, at 23:50


def test_a_finished_job_budget_stays_listed_and_gated(stack, capsys) -> None:
    status, out, err = mlcost(stack, capsys, "budgets", "--at", "2026-03-22T00:05:00Z", "--fail-at", "100%",
                              "--format", "json")
    rows = {r["budget"]: r for r in json.loads(out)["budgets"]}
    job = rows["trainer-job"]
    assert job["state"] == "idle" and job["spent_from"] == "budget:mlcost_budget_spend_usd:period_to_date"
    assert job["spent_usd"] == pytest.approx(JOB_SPENT) and job["limit_usd"] == 2205
    assert job["runs_out"] == "spent" and rows["search-monthly"]["state"] == "active"
    assert status == 1 and err == f"mlcost: budget past --fail-at 100%: trainer-job {JOB_SPENT / 22.05:.1f}%\n"


def test_budgets_from_the_config_show_without_recordings(stack, capsys, tmp_path: Path) -> None:
    config = tmp_path / "pricing.yaml"
    config.write_text("budgets:\n  - {name: fleet-weekly, amount_usd: 500, period: week, selector: {team: ads}}\n")
    status, out, err = mlcost(stack, capsys, "budgets", "--at", "2026-03-25T00:00:00Z", "--config.file", str(config),
                              "--format", "json", "--fail-at", "1%")
    rows = {r["budget"]: r for r in json.loads(out)["budgets"]}
    assert set(rows) == {"fleet-weekly", "research-daily", "search-monthly", "trainer-job"}
    assert rows["fleet-weekly"]["spent_usd"] == 0.0 and rows["fleet-weekly"]["period"] == "2026-W13"
    assert rows["trainer-job"]["spent_usd"] == pytest.approx(JOB_SPENT)  # three days after the job
    assert status == 1 and "trainer-job 119.4%" in err and "fleet-weekly" not in err


def test_budgets_without_alertmanager_warn_and_still_answer(stack, capsys) -> None:
    status, out, err = mlcost(stack, capsys, "budgets", "--at", "2026-03-21T12:00:00Z", "--alertmanager.url",
                              f"http://127.0.0.1:{free_port()}", "--query.timeout", "3s")
    assert status == 0 and err.count("\n") == 1
    assert err.startswith("mlcost: warning: alerts not shown: Alertmanager at http://127.0.0.1:")
    assert "research-daily" in out and "Alerts firing" not in out


def _recommendations(stack, capsys, status: int = 0) -> tuple[dict[tuple[str, str], dict], dict[str, dict]]:
    code, out, err = mlcost(stack, capsys, "recommend", *WINDOW, "--format", "json")
    assert code == status, err
    body = json.loads(out)
    return {(r["kind"], r["subject"]): r for r in body["recommendations"]}, {c["check"]: c for c in body["checks"]}


PLANTED = {("idle-replicas", "chat v2"), ("scale-to-zero", "embed v3"), ("smaller-gpu", "embed"),
           ("commitment", "aws a100-80gb"), ("spot", "trainer v1"), ("version-regression", "chat v2"),
           ("above-target", "chat v2")}


def test_recommend_finds_what_the_history_warrants_and_nothing_else(stack, capsys) -> None:
    found, checks = _recommendations(stack, capsys)
    assert set(found) == PLANTED
    assert {c["status"] for c in checks.values()} <= {"ran", "partial"}
    assert checks["above-target"]["notes"] == ["no target for embed v3"]
    assert checks["commitment"]["notes"] == ["not on demand in every hour, so not steady: aws h100 (48 of 336 h)"]
    zero = found[("scale-to-zero", "embed v3")]
    assert zero["evidence"]["zero_traffic_hours"] == 84  # 01:00-06:00 UTC closes 6 empty hours a day
    assert zero["usd_per_month"] == pytest.approx(84 * 5.0 * MONTH)
    assert found[("spot", "trainer v1")]["usd_per_month"] == pytest.approx(55.04 * 48 * 0.65 * MONTH)
    replicas = found[("idle-replicas", "chat v2")]
    assert replicas["evidence"]["replicas_needed"] == 1  # 4 req/s under r* = $5/h / (3.6 x $0.10) = 13.9 req/s
    assert replicas["usd_per_month"] == pytest.approx(5.0 * 730)
    smaller = found[("smaller-gpu", "embed")]
    assert smaller["action"] == "a100-80gb -> t4"
    assert smaller["usd_per_month"] == pytest.approx(
        5.0 * (1 - smaller["evidence"]["candidate_usd_per_hour"] / smaller["evidence"]["current_usd_per_hour"]) * 730)
    commit = found[("commitment", "aws a100-80gb")]
    # 3 GPUs steady; chat's idle replica and embed (smaller GPU, scale to zero) leave 1 to commit
    assert commit["evidence"]["steady_gpus"] == 3 and commit["evidence"]["committed_gpus"] == 1
    assert commit["action"] == "commit_1y for 1 GPUs"  # the first of the two options shown for a key
    assert commit["usd_per_month"] == pytest.approx(5.0 * (1 - 0.62) * 730)
    # chat v2 ran 7 of the 14 days: its monthly figures scale from its 168 hours, not from the window
    per_1k_v1, per_1k_v2 = 10 / 36, 10 / 14.4
    requests_v2 = 4 * 7 * 86400 / 1000
    regression = found[("version-regression", "chat v2")]
    assert regression["usd_per_month"] == pytest.approx((per_1k_v2 - per_1k_v1) * requests_v2 * 730 / 168)
    target = found[("above-target", "chat v2")]
    assert target["usd_per_month"] == pytest.approx((per_1k_v2 - 0.10) * requests_v2 * 730 / 168)
    assert "GPU utilization 30%" in target["action"] and "v2 costs 2.5x v1" in target["action"]
    status, out, _ = mlcost(stack, capsys, "recommend", *WINDOW, "--format", "json")
    ranked = [r["usd_per_month"] for r in json.loads(out)["recommendations"]]  # as printed, duplicates of a key too
    assert status == 0 and ranked == sorted(ranked, reverse=True)
    assert all(r["promql"] and r["confidence"] in ("high", "medium", "low") for r in found.values())


@pytest.fixture(scope="module")
def partial_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The same month without mlcost_model_info (relabelled away), GPU counts, cost-per-1k targets and the
    budgets' period-to-date recordings."""
    root = tmp_path_factory.mktemp("mlcost-partial")
    drop = frozenset({"mlcost_model_info", "mlcost_allocated_gpus", "mlcost_target_cost_per_1k_usd",
                      "budget:mlcost_budget_spend_usd:period_to_date"})
    with _serving(root, mlcost_history.create_blocks(root / "tsdb", recorded=True, drop=drop)) as urls:
        yield urls


def test_recommend_says_which_checks_could_not_run_and_exits_4(partial_stack, capsys) -> None:
    found, checks = _recommendations(partial_stack, capsys, status=4)
    assert set(found) == PLANTED - {("idle-replicas", "chat v2"), ("above-target", "chat v2")}
    for kind in ("idle-replicas", "above-target"):
        assert checks[kind]["status"] == "could not run"
        assert checks[kind]["missing"] == ["mlcost_target_cost_per_1k_usd"]
    assert "GPU counts from mlcost_gpu_utilization_ratio" in checks["commitment"]["detail"]
    assert found[("commitment", "aws a100-80gb")]["evidence"]["committed_gpus"] == 2  # no replica advice now
    for fmt in ("table", "markdown", "csv"):
        status, out, err = mlcost(partial_stack, capsys, "recommend", *WINDOW, "--format", fmt)
        assert status == 4 and err.count("\n") == 1
        assert "2 of 7 checks could not run: idle-replicas (no mlcost_target_cost_per_1k_usd)" in err
        if fmt != "csv":
            assert "could not run" in out


def _estimate(stack, capsys, *argv: str) -> tuple[int, dict, str]:
    status, out, err = mlcost(stack, capsys, "estimate", *argv, "--at", "2026-04-01", "--format", "json")
    return status, json.loads(out)["meta"]["measured"] if out else {}, err


def test_estimate_like_uses_the_measured_cost_per_1k(stack, capsys) -> None:
    status, measured, err = _estimate(stack, capsys, "--gpu", "a100-80gb", "--request-rate", "4", "--throughput",
                                      "10", "--like", "chat:v2", "--history", "7d", "--max-usd", "1000")
    assert measured["hours_of_history"] == 7 * 24  # the hours ending 03-25 01:00 to 04-01 00:00
    assert measured["usd_per_unit"] == pytest.approx(10.0 / (4 * 3.6))
    assert measured["total_usd"] == pytest.approx(10.0 / (4 * 3.6) * 4 * 730 * 3.6)
    assert status == 1 and "over --max-usd $1,000" in err


def test_estimate_like_counts_the_idle_hours_of_a_model(stack, capsys) -> None:
    # embed: $5/h all day, 2 req/s only from 06:00 to 24:00: $120 a day for 129,600 requests
    status, measured, err = _estimate(stack, capsys, "--gpu", "a100-80gb", "--request-rate", "2", "--throughput",
                                      "10", "--like", "embed", "--history", "7d", "--hours", "24",
                                      "--max-usd", "115")
    assert measured["usd_per_unit"] == pytest.approx(120 / 129.6)
    assert measured["total_usd"] == pytest.approx(120 / 129.6 * 2 * 24 * 3.6)  # $160: 24 h at 2 req/s
    assert measured["p10_usd"] == pytest.approx(measured["p90_usd"])  # every day alike
    assert measured["coverage"] == pytest.approx(1.0)
    assert status == 1 and "$160" in err


def test_estimate_like_prices_training_per_epoch_and_per_gpu_hour(stack, capsys) -> None:
    status, measured, err = _estimate(stack, capsys, "--gpu", "h100", "--gpus", "8", "--hours", "10",
                                      "--epochs", "4", "--like", "trainer:v1", "--history", "14d")
    assert status == 0, err
    assert measured["unit"] == "epoch" and measured["usd_per_unit"] == pytest.approx(55.04 * 6)
    assert measured["total_usd"] == pytest.approx(55.04 * 6 * 4)
    assert measured["hours_of_history"] == 48
    status, measured, err = _estimate(stack, capsys, "--gpu", "h100", "--gpus", "4", "--hours", "10",
                                      "--like", "trainer", "--history", "14d")
    assert status == 0, err
    # the exporter's last 10 minutes before the pod ended are never scraped: 47 h 55 min of 48 h
    assert measured["unit"] == "GPU-hour"
    assert measured["usd_per_unit"] == pytest.approx(55.04 / 8, rel=0.005)
    assert measured["total_usd"] == pytest.approx(55.04 / 8 * 4 * 10, rel=0.005)


def test_estimate_like_names_the_series_it_lacks(stack, capsys) -> None:
    status, _, err = _estimate(stack, capsys, "--gpu", "l4", "--hours", "1", "--like", "nobody")
    assert status == 2 and err.count("\n") == 1
    assert "--like: no mlcost_usd_total for nobody between 2026-03-02T00:00:00Z and 2026-04-01T00:00:00Z" in err
    status, _, err = _estimate(stack, capsys, "--gpu", "l4", "--hours", "1", "--request-rate", "1",
                               "--throughput", "5", "--like", "trainer")
    assert status == 2 and "no mlcost_usd_total for trainer" in err and "mlcost_requests_total" in err


def test_an_empty_window_is_one_line_and_status_2(stack, capsys) -> None:
    status, out, err = mlcost(stack, capsys, "report", "--since", "7d", "--until", "2026-01-01")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "no cost recorded between 2025-12-25T00:00:00Z" in err


@pytest.mark.parametrize("command", [["report"], ["recommend"], ["budgets"], ["estimate", "--gpu", "l4",
                                                                             "--hours", "1", "--like", "chat"]])
def test_unreachable_or_unauthorized_prometheus_is_status_3(capsys, loopback_server, command: list[str]) -> None:
    refusing = loopback_server(lambda _: Reply(401), path="")
    for url, words in ((f"http://127.0.0.1:{free_port()}", "unreachable"), (refusing.base, "HTTP 401")):
        status, out, err = mlcost(None, capsys, *command, "--prometheus.url", url, "--query.timeout", "3s")
        assert status == 3 and out == "" and err.count("\n") == 1 and words in err, err


def test_console_script_never_prints_a_traceback(stack) -> None:
    script = Path(sys.executable).with_name("mlcost")
    for argv in (["estimate", "--gpu", "nope", "--hours", "1"], ["report", "--since", "banana"],
                 ["budgets", "--fail-at", "x"], ["report", "--prometheus.url", "ftp://x"]):
        result = subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "MLCOST_PROMETHEUS_URL": stack["prometheus"]})
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_finished_budget_without_recordings_sums_the_exporters_counters(partial_stack, capsys) -> None:
    status, out, err = mlcost(partial_stack, capsys, "budgets", "--at", "2026-03-23T00:00:00Z", "--format", "json",
                              "--no-alertmanager")
    assert status == 0, err
    job = {r["budget"]: r for r in json.loads(out)["budgets"]}["trainer-job"]
    assert job["spent_from"] == "mlcost_budget_spend_usd_total"
    assert job["spent_usd"] == pytest.approx(JOB_SPENT) and job["state"] == "idle"


def test_report_budget_table_from_the_config_without_model_info(partial_stack, capsys, tmp_path: Path) -> None:
    config = tmp_path / "pricing.yaml"
    config.write_text("models:\n  - {name: chat, version: v2, labels: {team: search}}\n"
                      "  - {name: embed, version: v3, labels: {team: ads}}\n"
                      "budgets:\n  - {name: search-monthly, amount_usd: 20000, selector: {team: search}}\n"
                      "  - {name: ads-weekly, amount_usd: 900, period: week, selector: {team: ads}}\n")
    body = report_json(partial_stack, capsys, *WINDOW, "--config.file", str(config), "--by", "team")
    assert [b["budget"] for b in body["budgets"]] == ["ads-weekly", "search-monthly"]
    assert body["budgets"][0]["spent_usd"] == pytest.approx(1680) and body["budgets"][0]["limit_usd"] == 900
    body["budgets"].pop(0)
    assert body["budgets"][0]["spent_usd"] == pytest.approx(3360)  # chat v1 and v2: the config names the model
    rows = {r["team"]: r for r in body["rows"] if r["group"] != "TOTAL"}
    assert rows["search"]["cost_usd"] == pytest.approx(3360)
