"""The saved expected /metrics of a training pod: progress, cost per epoch, projection, measured energy."""

import textwrap

from ml_cost_exporter.runtime import Clocks, Runtime
from tests.conftest import A100, FIXTURES, GIB
from tests.integration.exposition.test_collectors import matches_golden, render

GOLDEN = FIXTURES / "golden" / "training-metrics.txt"
CONFIG = textwrap.dedent("""
    pricing: {provider: gcp, purchase_option: spot}
    allocation: {gpu: {type: a100-80gb, count: 1}, vcpus: 12, memory_gib: 85}
    models:
      - name: llama-finetune
        version: run-1
        workload: training
        server: {preset: training, url: "http://trainer/metrics"}
        labels: {team: research}
    budgets: [{name: research-monthly, amount_usd: 5000, selector: {team: research}}]
    collection: {interval_seconds: 60, cost_window_seconds: 300}
""")


def trainer_text(minute: int) -> str:
    """The training loop's exposition after `minute` minutes: 0.1 epoch (1,000 samples, 10 steps) a minute."""
    return textwrap.dedent(f"""\
        # HELP training_samples_total Training samples processed.
        # TYPE training_samples_total counter
        training_samples_total {1000 * minute}.0
        # HELP training_steps_total Optimizer steps taken.
        # TYPE training_steps_total counter
        training_steps_total {10 * minute}.0
        # HELP training_epochs_total Epochs completed, by fractions of an epoch per batch.
        # TYPE training_epochs_total counter
        training_epochs_total {0.1 * minute}
        # HELP training_expected_epochs Epochs this job will run in all.
        # TYPE training_expected_epochs gauge
        training_expected_epochs 4.0
    """)


def test_training_pod_metrics_match_the_saved_expected_output(tmp_path, clock, fake_nvml, update_golden):
    config = tmp_path / "pricing.yaml"
    config.write_text(CONFIG)
    pages = iter(trainer_text(m) for m in range(10, 14))
    rt = Runtime(str(config), frozenset({"gpu", "server"}), Clocks(clock.wall, clock.monotonic), environ={},
                 cgroup_root=tmp_path, server_fetch=lambda url: next(pages))
    try:
        for minute in range(10, 14):
            # 350 W all along: the energy counter grows by 21 kJ a minute.
            fake_nvml.write("init 0", f"gpu 0 97 {70 * GIB} {80 * GIB} 350000 0 0 GPU-cccc {A100}",
                            f"energy 0 {21_000_000 * minute}")
            rt.tick()
            clock.advance(60)
        text = render(rt)
    finally:
        rt.close()
    matches_golden(text, GOLDEN, update_golden)
