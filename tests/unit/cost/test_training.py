import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.ledger import IntervalCost
from ml_cost_exporter.cost.training import TrainingAccount

JOB = ("llama-ft", "run-7")
CONFIG = """
models:
  - name: llama-ft
    version: run-7
    workload: training
    expected_epochs: 10
    server: {preset: training, url: "http://127.0.0.1:9400/metrics"}
"""


def models(text: str = CONFIG):
    return parse_config(text, "t.yaml").models


def charge(end: float, usd: float) -> IntervalCost:
    return IntervalCost(end - 60, end, {JOB: {"gpu": usd}}, {JOB: 1.0})


def test_cost_per_epoch_per_1m_samples_progress_and_projection_against_hand_values():
    account = TrainingAccount(models(), window_seconds=300)
    # Two minutes at $0.60 a minute; 0.25 epoch (500 samples of 2000) a minute; the job is at epoch 4.5.
    account.record(charge(60, 0.6), {JOB: {"epochs": 0.25, "samples": 500, "steps": 10}}, {JOB: {"epochs": 4.25}})
    account.record(charge(120, 0.6), {JOB: {"epochs": 0.25, "samples": 500, "steps": 10}}, {JOB: {"epochs": 4.5}})
    snap = account.snapshot({JOB: 30.0})  # $30 spent so far, as the ledger says
    assert snap.cost_per_epoch_usd[JOB] == pytest.approx(1.2 / 0.5)  # $2.40 an epoch
    assert snap.cost_per_1m_samples_usd[JOB] == pytest.approx(1.2 / 1000 * 1e6)
    assert snap.progress_ratio[JOB] == pytest.approx(0.45)
    assert snap.projected_cost_usd[JOB] == pytest.approx(30.0 + 5.5 * 2.4)
    assert snap.progress_total[(*JOB, "steps")] == 20


def test_a_stalled_job_has_no_cost_per_epoch_or_projection_but_keeps_its_progress():
    account = TrainingAccount(models(), window_seconds=120)
    account.record(charge(60, 0.6), {JOB: {"epochs": 0.5}}, {JOB: {"epochs": 3.0}})
    for end in (180, 240, 300):  # cost goes on, the counters do not move
        account.record(charge(end, 0.6), {}, {JOB: {"epochs": 3.0}})
    snap = account.snapshot({JOB: 2.4})
    assert JOB not in snap.cost_per_epoch_usd and JOB not in snap.projected_cost_usd
    assert snap.progress_ratio[JOB] == pytest.approx(0.3)


def test_the_jobs_own_expected_total_is_used_when_the_config_has_none_and_samples_when_no_epochs():
    text = CONFIG.replace("    expected_epochs: 10\n", "")
    account = TrainingAccount(models(text), window_seconds=300)
    account.record(charge(60, 1.0), {JOB: {"samples": 1000}}, {JOB: {"samples": 4000, "expected_samples": 10000}})
    snap = account.snapshot({JOB: 4.0})
    assert snap.progress_ratio[JOB] == pytest.approx(0.4)
    assert snap.projected_cost_usd[JOB] == pytest.approx(4.0 + 6000 * (1.0 / 1000))


def test_without_any_expected_total_there_is_no_ratio_or_projection():
    account = TrainingAccount(models(CONFIG.replace("    expected_epochs: 10\n", "")), window_seconds=300)
    account.record(charge(60, 1.0), {JOB: {"epochs": 1.0}}, {JOB: {"epochs": 1.0}})
    snap = account.snapshot({JOB: 1.0})
    assert snap.cost_per_epoch_usd[JOB] == 1.0 and snap.progress_ratio == {} and snap.projected_cost_usd == {}


def test_an_inference_model_is_not_a_training_job():
    inference = models('models: [{name: chat, server: {preset: vllm, url: "http://x/metrics"}}]')
    account = TrainingAccount(inference, window_seconds=300)
    account.record(IntervalCost(0, 60, {("chat", "latest"): {"gpu": 1.0}}, {("chat", "latest"): 1.0}),
                   {("chat", "latest"): {"requests": 5}}, {("chat", "latest"): {"requests": 5}})
    snap = account.snapshot({})
    assert snap.cost_per_epoch_usd == {} and snap.progress_ratio == {} and snap.progress_total == {}


@pytest.mark.parametrize("state", [None, {"version": 2, "totals": []}, {"version": 1, "totals": [["a", "b"]]},
                                   {"version": 1, "totals": [["llama-ft", "run-7", "epochs", -1]]},
                                   {"version": 1, "totals": [["llama-ft", "run-7", "bogus", 1]]},
                                   {"version": 1, "totals": [["llama-ft", "run-7", "epochs", float("nan")]]}])
def test_bad_training_state_is_refused(state):
    account = TrainingAccount(models(), window_seconds=300)
    with pytest.raises(ValueError):
        account.restore_state(state)


def test_training_state_round_trips():
    account = TrainingAccount(models(), window_seconds=300)
    account.record(charge(60, 0.6), {JOB: {"epochs": 0.25, "samples": 500}}, {JOB: {"epochs": 0.25}})
    fresh = TrainingAccount(models(), window_seconds=300)
    fresh.restore_state(account.export_state())
    assert fresh.snapshot({}).progress_total == {(*JOB, "epochs"): 0.25, (*JOB, "samples"): 500}
