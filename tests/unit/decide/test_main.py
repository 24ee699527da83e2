"""`mlcost`'s command line: one error prefix, formats per subcommand, the HTML report's intro sentence."""

from __future__ import annotations

import pytest

from ml_cost_exporter.decide.html import intro
from ml_cost_exporter.decide.main import main


def run(capsys: pytest.CaptureFixture, *argv: str, environ: dict | None = None) -> tuple[int, str, str]:
    status = main(list(argv), environ or {})
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "--since", "-5d"], "mlcost: report: argument --since: expected one argument\n"),
    (["report", "--nope"], "mlcost: unrecognized arguments: --nope\n"),
    (["budgets", "--fail-at"], "mlcost: budgets: argument --fail-at: expected one argument\n"),
    (["nope"], "mlcost: argument COMMAND: invalid choice: 'nope' (choose from 'pricing', 'estimate', 'report', "
               "'budgets', 'recommend', 'compare')\n"),
])
def test_usage_errors_carry_one_prefix(capsys, argv: list[str], message: str) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out, err) == (2, "", message)


@pytest.mark.parametrize("command", [["pricing"], ["estimate", "--gpu", "l4", "--hours", "1"], ["budgets"],
                                     ["recommend"]])
def test_html_is_a_format_of_report_only(capsys, command: list[str]) -> None:
    status, out, err = run(capsys, *command, "--format", "html")
    assert status == 2 and out == ""
    assert err.startswith(f"mlcost: {command[0]}: argument --format: invalid choice: 'html'")
    status, _, err = run(capsys, *command, environ={"MLCOST_FORMAT": "html"})
    assert status == 2 and err.startswith(f"mlcost: {command[0]}: --format: html is not one of table, json")


def test_report_takes_html_and_needs_an_output_file(capsys) -> None:
    status, _, err = run(capsys, "report", "--format", "html")
    assert status == 2 and err == "mlcost: --format html needs --output FILE\n"


def test_html_intro_states_the_change_or_that_there_is_none() -> None:
    assert intro({"total_usd": 3989.2, "change": None}) == (
        "Total $3,989; the previous window recorded no cost to compare with.")
    assert intro({"total_usd": 7682.0, "change": 0.5238}) == "Total $7,682, +52.4% against the previous window."
