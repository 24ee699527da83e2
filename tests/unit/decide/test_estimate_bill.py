"""`mlcost estimate` with storage kept for some months and egress: added to the total, priced from the catalog."""

from __future__ import annotations

import json

import pytest

from ml_cost_exporter.decide.main import main


def estimate(capsys, *argv: str) -> tuple[int, dict | None, str]:
    status = main(["estimate", "--format", "json", *argv], {})
    out, err = capsys.readouterr()
    return status, json.loads(out) if out else None, err


def test_storage_and_egress_are_added_to_the_total_and_not_to_the_alternatives(capsys) -> None:
    status, body, err = estimate(capsys, "--gpu", "l4", "--hours", "730", "--storage-gib", "500",
                                 "--storage-months", "3", "--egress-gib", "1000", "--egress-destination",
                                 "cross_region")
    assert status == 0, err
    figures = {f["figure"]: f["usd"] for f in body["figures"]}
    assert figures["storage"] == pytest.approx(500 * 0.08 * 3)  # gp3, three months
    assert figures["egress"] == pytest.approx(1000 * 0.02)
    assert figures["total"] == pytest.approx(0.8048 * 730 + 120 + 20)
    on_demand = next(a for a in body["alternatives"] if (a["provider"], a["purchase_option"]) == ("aws", "on_demand"))
    assert on_demand["vs_this"] == pytest.approx(1.0)  # alternatives compare the compute alone


def test_storage_defaults_to_the_jobs_hours_and_the_providers_default_class(capsys) -> None:
    _, body, _ = estimate(capsys, "--gpu", "l4", "--provider", "gcp", "--hours", "73", "--storage-gib", "100")
    figures = {f["figure"]: f["usd"] for f in body["figures"]}
    assert figures["storage"] == pytest.approx(100 * 0.10 * 0.1)  # pd-balanced for a tenth of a month


def test_a_storage_class_without_a_price_is_one_line_and_status_2(capsys) -> None:
    status, body, err = estimate(capsys, "--gpu", "l4", "--hours", "1", "--storage-gib", "10",
                                 "--storage-class", "gp9")
    assert status == 2 and body is None
    assert err.startswith('mlcost: --storage-class: aws has no storage class "gp9" in the catalog (known: ')
