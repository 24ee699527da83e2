"""Helpers shared by the benchmarks: the fake NVML build and a paired timing loop."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import fake_nvml

REPO = Path(__file__).resolve().parents[1]


def load_fake_nvml(state_lines: list[str]) -> Path:
    """Build the fake libnvidia-ml.so (harness/fake_nvml), load it, and point it at a state file with these lines."""
    directory = Path(tempfile.mkdtemp(prefix="mlcost-bench-"))
    state = directory / "state.txt"
    state.write_text("\n".join(state_lines) + "\n")
    os.environ["FAKE_NVML_STATE"] = str(state)
    fake_nvml.build_and_load(directory, optimize="-O2")
    return directory


def paired(ours: Callable[[], object], baseline: Callable[[], object], rounds: int = 30,
           inner: int = 5) -> tuple[float, float]:
    """Median seconds per call of each, measured alternately in the same process."""
    ours_times, baseline_times = [], []
    for _ in range(3):  # warm up both
        ours()
        baseline()
    for _ in range(rounds):
        for fn, times in ((ours, ours_times), (baseline, baseline_times)):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - start) / inner)
    return statistics.median(ours_times), statistics.median(baseline_times)
