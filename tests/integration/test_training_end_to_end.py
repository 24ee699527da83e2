"""A real training loop (exporter/examples/training_loop.py) exporting its progress with prometheus_client,
the exporter beside it as processes, GPUs from the fake NVML: cost per epoch, progress, projection, energy,
a job resumed from a checkpoint, a stalled job, and the termination message on SIGTERM."""

import sys
import textwrap
import time

import pytest
import requests

from tests.conftest import A100, GIB, REPO, free_port, wait_until
from tests.integration.test_exporter_end_to_end import scrape, value
from tests.support.binaries import start_exporter

LOOP = REPO / "exporter" / "examples" / "training_loop.py"
JOB = {"model": "toy-regression", "version": "run-1"}


def job_epochs(url: str) -> float:
    return value(scrape(url), "training_epochs_total")


def start_training(processes, port: int, *flags: str):
    process = processes.start(f"train-{port}-{len(processes._started)}", [
        sys.executable, str(LOOP), "--port", str(port), "--epochs", "40", "--samples", "1000", "--batch-size",
        "100", "--step-seconds", "0.02", *flags])
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok, what="the training loop")
    return process


def start(processes, tmp_path, fake_nvml_library, *flags):
    port = free_port()
    training = start_training(processes, port, *flags)
    state = tmp_path / "nvml.txt"
    state.write_text(f"init 0\ngpu 0 95 {30 * GIB} {80 * GIB} 300000 0 0 GPU-train {A100}\n")
    config = tmp_path / "pricing.yaml"
    config.write_text(textwrap.dedent(f"""
        allocation: {{gpu: {{type: a100-80gb, count: 1}}, vcpus: 8, memory_gib: 64}}
        models:
          - name: toy-regression
            version: run-1
            workload: training
            server: {{preset: training, url: "http://127.0.0.1:{port}/metrics"}}
        collection: {{interval_seconds: 0.25, cost_window_seconds: 3}}
    """))
    message = tmp_path / "termination-log"
    message.write_text("")
    env = {"LD_LIBRARY_PATH": str(fake_nvml_library), "FAKE_NVML_STATE": str(state), "NVIDIA_VISIBLE_DEVICES": "all"}
    url = start_exporter(processes, config, env, "--kubernetes.termination-message-path", str(message))
    return url, port, training, message


def test_a_training_job_is_priced_per_epoch_projected_and_reported_when_the_exporter_stops(
        processes, tmp_path, fake_nvml_library):
    url, port, training, message = start(processes, tmp_path, fake_nvml_library)
    samples = wait_until(lambda: (s := scrape(url)) and value(s, "mlcost_training_projected_cost_usd", **JOB)
                         and value(s, "mlcost_training_progress_ratio", **JOB) > 0.05 and s,
                         what="a projection of the job's cost")
    per_epoch = value(samples, "mlcost_training_cost_per_epoch_usd", **JOB)
    ratio = value(samples, "mlcost_training_progress_ratio", **JOB)
    spent = sum(v for (n, labels), v in samples.items() if n == "mlcost_usd_total")
    # The truth from the job's own counter: what the pod cost while the job ran its next two epochs.
    job = f"http://127.0.0.1:{port}/metrics"
    start_epochs, started = job_epochs(job), time.monotonic()
    # Long enough that the exporter's 3 s window holds only this steady stretch.
    wait_until(lambda: job_epochs(job) >= start_epochs + 2 and time.monotonic() - started > 4,
               what="two more epochs and a full cost window")
    later = scrape(url)
    cost = sum(v for (n, _), v in later.items() if n == "mlcost_usd_total") - spent
    epochs = value(later, "mlcost_training_epochs_total", **JOB) - value(samples, "mlcost_training_epochs_total", **JOB)
    assert value(later, "mlcost_training_cost_per_epoch_usd", **JOB) == pytest.approx(cost / epochs, rel=0.35)
    projected = value(samples, "mlcost_training_projected_cost_usd", **JOB)
    assert projected == pytest.approx(spent + (1 - ratio) * 40 * per_epoch, rel=0.05)
    assert value(samples, "mlcost_training_samples_total", **JOB) > 0
    assert value(samples, "mlcost_energy_joules_total", **JOB) > 0  # 300 W x time, measured through NVML
    joules = value(later, "mlcost_energy_joules_total", **JOB) - value(samples, "mlcost_energy_joules_total", **JOB)
    assert value(later, "mlcost_training_energy_per_epoch_joules", **JOB) == pytest.approx(joules / epochs, rel=0.35)

    # The job is killed and resumed from its checkpoint with its counters restored: not counted as new work.
    before = value(scrape(url), "mlcost_training_epochs_total", **JOB)
    training.kill()
    training.wait()
    # Its last checkpoint was at epoch 1: it redoes the epochs since, which still cost money.
    resumed = start_training(processes, port, "--resume-epochs", "1", "--step-seconds", "0.5")
    wait_until(lambda: value(scrape(url), "mlcost_training_progress_ratio", **JOB) < 2 / 40,
               what="progress read from the resumed job's counters")
    after = value(scrape(url), "mlcost_training_epochs_total", **JOB)
    assert after - before < 1.0, "the restored counters were counted as epochs trained"
    assert resumed.poll() is None

    exporter = processes._started[1]
    exporter.terminate()
    assert exporter.wait(10) == 0
    report = message.read_text()
    assert report.startswith("ml-cost-exporter final report at ")
    line = next(line for line in report.splitlines() if line.startswith("toy-regression run-1 (training): $"))
    assert "per epoch" in line or "epochs" in line
    assert "kWh GPU energy" in line and "kg CO2e" in line


def test_a_stalled_job_keeps_accruing_but_claims_no_cost_per_epoch(processes, tmp_path, fake_nvml_library):
    url, _port, _training, _message = start(processes, tmp_path, fake_nvml_library, "--stall-after-epochs", "1")
    wait_until(lambda: value(scrape(url), "mlcost_training_progress_ratio", **JOB) == pytest.approx(1 / 40),
               what="the job to stall at epoch 1")
    wait_until(lambda: value(scrape(url), "mlcost_training_cost_per_epoch_usd", **JOB) is None, timeout=10,
               what="cost per epoch to leave once the window holds no progress")
    spent = sum(v for (n, _), v in scrape(url).items() if n == "mlcost_usd_total")
    wait_until(lambda: sum(v for (n, _), v in scrape(url).items() if n == "mlcost_usd_total") > spent,
               what="cost to keep accruing while the job makes no progress")
    assert value(scrape(url), "mlcost_training_projected_cost_usd", **JOB) is None
