"""`mlcost estimate` and `mlcost pricing` need no Prometheus: figures from the embedded catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_cost_exporter.config.catalog import embedded_catalog
from ml_cost_exporter.decide.main import main


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv), {})
    out, err = capsys.readouterr()
    if "--format" not in argv and argv[:1] != ("pricing",):  # instance names may widen the catalog's table
        assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out
    return status, out, err


def estimate(capsys, *argv: str) -> dict:
    status, out, err = run(capsys, "estimate", "--format", "json", *argv)
    assert status == 0, err
    return json.loads(out)


def test_training_estimate_from_epochs_and_throughput(capsys) -> None:
    body = estimate(capsys, "--gpu", "h100", "--gpus", "8", "--epochs", "3", "--samples-per-epoch", "1.2e6",
                    "--throughput", "450")
    hours = 3 * 1.2e6 / 450 / 3600
    figures = {f["figure"]: f["usd"] for f in body["figures"]}
    assert body["meta"]["hours"] == pytest.approx(hours)
    assert figures["per hour"] == pytest.approx(55.04)  # one p5.48xlarge: 8 H100 with their host
    assert figures["total"] == pytest.approx(55.04 * hours)
    assert figures["per epoch"] == pytest.approx(55.04 * hours / 3)
    assert figures["per 1M samples"] == pytest.approx(55.04 * hours / 3.6)
    totals = [a["total_usd"] for a in body["alternatives"]]
    assert totals == sorted(totals)
    spot = next(a for a in body["alternatives"] if (a["provider"], a["purchase_option"]) == ("aws", "spot"))
    assert spot["total_usd"] == pytest.approx(55.04 * 0.35 * hours)


def test_serving_estimate_sizes_replicas_to_traffic(capsys) -> None:
    body = estimate(capsys, "--gpu", "l4", "--request-rate", "40", "--throughput", "25",
                    "--target-utilization", "0.7", "--tokens-per-request", "500")
    figures = {f["figure"]: f["usd"] for f in body["figures"]}
    assert body["meta"]["replicas"] == 3  # 40 / (25 x 0.7) = 2.3
    assert figures["total"] == pytest.approx(3 * 0.8048 * 730)
    requests = 40 * 730 * 3600
    assert figures["per 1k requests"] == pytest.approx(3 * 0.8048 * 730 / requests * 1000)
    assert figures["per 1M tokens"] == pytest.approx(3 * 0.8048 * 730 / (requests * 500) * 1e6)


def test_mig_profile_and_instance_are_priced_as_their_share(capsys) -> None:
    mig = estimate(capsys, "--gpu", "a100-80gb", "--mig-profile", "1g.10gb", "--hours", "10")
    assert mig["meta"]["total_usd"] == pytest.approx(27.447 / 8 / 7 * 10)  # p4de.24xlarge after June 2025
    instance = estimate(capsys, "--instance", "g5.12xlarge", "--hours", "2", "--purchase-option", "spot")
    assert instance["meta"]["total_usd"] == pytest.approx(5.672 * 0.35 * 2)


def test_job_yaml_gives_the_same_figures_and_flags_override_it(capsys, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("gpu: h100\ngpus: 8\nhours: 5\nprovider: gcp\n")
    assert estimate(capsys, "--file", str(job))["meta"]["total_usd"] == pytest.approx(88.49 * 5)  # a3-highgpu-8g
    assert estimate(capsys, "--file", str(job), "--hours", "1")["meta"]["total_usd"] == pytest.approx(88.49)


@pytest.mark.parametrize("gpus", ["4", "3"])
def test_multi_gpu_jobs_are_priced_as_the_instance_that_holds_them(capsys, gpus: str) -> None:
    body = estimate(capsys, "--gpu", "a10g", "--gpus", gpus, "--hours", "60")
    assert body["meta"]["total_usd"] == pytest.approx(5.672 * 60)  # one g5.12xlarge, not 4 x g5.xlarge ($241)
    assert {a["instance"] for a in body["alternatives"]} == {"g5.12xlarge", "(owned)"}
    assert body["notes"] == [f"{gpus} a10g GPUs share one machine: priced as the whole g5.12xlarge; no instance "
                             "holds them on gcp, azure"]


def test_a_gpu_count_no_instance_holds_is_refused(capsys) -> None:
    status, out, err = run(capsys, "estimate", "--gpu", "a100-80gb", "--gpus", "2", "--hours", "5",
                           "--provider", "gcp")
    assert status == 2 and out == ""
    assert err == "mlcost: --gpus: no gcp instance in the catalog holds 2 a100-80gb GPUs (its a100-80gb instances " \
                  "have 1)\n"


@pytest.mark.parametrize(("limit", "status"), [("100", 1), ("1000", 0)])
def test_max_usd_is_a_ci_gate(capsys, limit: str, status: int) -> None:
    code, _, err = run(capsys, "estimate", "--gpu", "h100", "--gpus", "8", "--hours", "10", "--max-usd", limit)
    assert code == status
    assert ("estimate $550 is over --max-usd $100" in err) == (status == 1)


@pytest.mark.parametrize(("argv", "words"), [
    (["--gpu", "a100", "--hours", "1"], 'unknown GPU type "a100"'),
    (["--gpu", "l4", "--hours", "-3"], "--hours: must be a positive number"),
    (["--gpu", "l4", "--hours", "nan"], "--hours: must be a positive number"),
    (["--gpu", "l4"], "say how long"),
    (["--gpu", "l4", "--instance", "g6.xlarge", "--hours", "1"], "either --gpu"),
    (["--gpu", "l4", "--provider", "azure", "--hours", "1"], "azure offers no"),
    (["--gpu", "l4", "--mig-profile", "1g.10gb", "--hours", "1"], "does not fit"),
    (["--gpu", "l4", "--request-rate", "5", "--hours", "1"], "needs --throughput"),
    (["--gpu", "l4", "--hours", "1", "--target-utilization", "2"], "at most 1"),
    (["--gpus", "x", "--gpu", "l4"], "invalid float value"),
])
def test_bad_input_is_one_line_and_status_2(capsys, argv: list[str], words: str) -> None:
    status, out, err = run(capsys, "estimate", *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("text", ["gpu: [unclosed", "gpu: l4\nhours: 1\nhourz: 2\n", "gpu: l4\nhours: many\n"])
def test_bad_job_files_name_the_line(capsys, tmp_path: Path, text: str) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(text)
    status, _, err = run(capsys, "estimate", "--file", str(job))
    assert status == 2 and "job.yaml" in err and err.count("\n") == 1, err


def test_pricing_compare_puts_one_gpu_everywhere_cheapest_first(capsys) -> None:
    status, out, _ = run(capsys, "pricing", "--compare", "l4", "--format", "json")
    rows = json.loads(out)["prices"]
    prices = [r["gpu_hourly_usd"] for r in rows]
    assert status == 0 and prices == sorted(prices)
    assert {(r["provider"], r["purchase_option"]) for r in rows} >= {("aws", "spot"), ("gcp", "commit_3y"),
                                                                     ("onprem", "owned")}
    assert not any(r["provider"] == "azure" for r in rows)  # the catalog has no L4 on Azure
    aws = next(r for r in rows if (r["provider"], r["purchase_option"]) == ("aws", "on_demand"))
    assert aws["gpu_hourly_usd"] == pytest.approx(0.8048) and aws["as_of"] == "2025-06"
    assert aws["source"] == embedded_catalog().providers["aws"].source


def test_pricing_filters_and_shows_sources(capsys) -> None:
    status, out, _ = run(capsys, "pricing", "--provider", "aws", "--gpu", "a100-80gb", "--purchase-option",
                         "commit_1y", "--format", "csv")
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith("provider,purchase_option,instance,gpu_type")
    assert len(lines) == 2 and lines[1].startswith("aws,commit_1y,p4de.24xlarge,a100-80gb,8,")
    status, out, _ = run(capsys, "pricing")
    assert "source aws: https://aws.amazon.com/ec2/pricing/on-demand/ (2025-06)" in out


def test_pricing_never_cuts_an_instance_name(capsys) -> None:
    status, out, _ = run(capsys, "pricing", "--provider", "azure", "--purchase-option", "on_demand")
    names = [line.split()[2] for line in out.splitlines()[1:] if line.startswith("azure ")]
    assert status == 0 and names == list(embedded_catalog().providers["azure"].instances)[:len(names)]
    assert "Standard_ND96isr_H100_v5" in names and len(names) >= 5


def test_pricing_takes_nested_commands_and_update_is_one_of_them(capsys) -> None:
    import argparse

    from ml_cost_exporter.decide import pricing_cmd
    from ml_cost_exporter.pricefiles.command import run_update

    parser = argparse.ArgumentParser()
    pricing_cmd.add_parser(parser.add_subparsers(dest="command"), [])
    assert parser.parse_args(["pricing", "update", "aws", "--from", "f.json", "-o", "o.yaml"]).func is run_update
    assert parser.parse_args(["pricing"]).handler is pricing_cmd.run


def test_usage_errors_and_help(capsys) -> None:
    status, _, err = run(capsys, "report", "--since", "3 days")
    assert status == 2 and '"3 days" is not a duration' in err
    status, _, err = run(capsys, "frobnicate")
    assert status == 2 and err.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"], {})
    assert exited.value.code == 0 and "mlcost report --since 30d" in capsys.readouterr().out


def test_mlcost_pricing_update_writes_an_overlay_the_exporter_loads(tmp_path, capsys):
    from ml_cost_exporter.config.schema import load_config
    from ml_cost_exporter.decide.main import main as mlcost
    from tests.conftest import FIXTURES

    overlay = tmp_path / "prices.yaml"
    status = mlcost(["pricing", "update", "aws", "--from", str(FIXTURES / "pricefiles" / "aws-ec2-us-east-1.json"),
                     "-o", str(overlay)], environ={})
    assert status == 0 and overlay.is_file()
    config = tmp_path / "pricing.yaml"
    config.write_text("pricing: {provider: aws, catalog_file: prices.yaml}\n")
    assert load_config(config).catalog.providers["aws"].instances  # the overlay loads through the schema
    assert mlcost(["pricing", "update", "aws", "--from", str(tmp_path / "missing.json"), "-o", str(overlay)],
                  environ={}) == 2
    assert "pricing update:" in capsys.readouterr().err
