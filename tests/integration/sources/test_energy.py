import pytest

from ml_cost_exporter.sources.energy import interval_energy_joules
from ml_cost_exporter.sources.nvml import GpuReading, GpuSample, NvmlGpuSource
from tests.conftest import A100, GIB


def gpu(uuid: str, power: float | None, energy: float | None, **extra) -> GpuReading:
    return GpuReading("0", uuid, A100, 0.5, 1.0, 2.0, power, energy_joules=energy, **extra)


def sample(*gpus: GpuReading, ok: bool = True) -> GpuSample:
    return GpuSample(ok, tuple(gpus))


def test_energy_counters_measure_the_whole_interval_not_the_last_power_reading():
    before = sample(gpu("A", 100.0, 5_000.0), gpu("B", 100.0, 9_000.0))
    after = sample(gpu("A", 100.0, 5_000.0 + 18_000.0), gpu("B", 100.0, 9_000.0 + 6_000.0))
    assert interval_energy_joules(before, after, 60.0) == pytest.approx(24_000.0)  # not 200 W x 60 s


def test_without_counters_power_times_the_interval_length():
    assert interval_energy_joules(None, sample(gpu("A", 250.0, None), gpu("B", 50.0, None)), 10.0) == 3_000.0


def test_a_counter_that_went_back_falls_back_to_power():
    before = sample(gpu("A", 300.0, 1e9))
    after = sample(gpu("A", 300.0, 12.0))  # the driver was reloaded
    assert interval_energy_joules(before, after, 2.0) == 600.0


def test_a_gpu_first_seen_uses_power_for_its_first_interval():
    before = sample(gpu("A", 100.0, 0.0))
    after = sample(gpu("A", 100.0, 1_000.0), gpu("B", 40.0, 7_777.0))
    assert interval_energy_joules(before, after, 10.0) == 1_000.0 + 400.0


@pytest.mark.parametrize("current", [
    None,
    sample(ok=False),
    sample(),
    sample(gpu("A", 100.0, 10.0), gpu("MIG-1", None, None, mig_gpu_instance="1")),  # a slice reports neither
])
def test_energy_is_unknown_rather_than_zero_when_any_gpu_cannot_be_measured(current):
    assert interval_energy_joules(sample(gpu("A", 100.0, 0.0)), current, 10.0) is None


def test_nvml_reads_the_total_energy_counter_in_joules(fake_nvml):
    fake_nvml.write("init 0", f"gpu 0 50 {GIB} {80 * GIB} 250000 0 0 GPU-aaaa {A100}",
                    f"gpu 1 50 {GIB} {80 * GIB} 100000 0 0 GPU-bbbb {A100}", "energy 0 123456789")
    source = NvmlGpuSource(None, environ={})
    try:
        readings = {g.uuid: g for g in source.sample().gpus}
    finally:
        source.close()
    assert readings["GPU-aaaa"].energy_joules == pytest.approx(123456.789)
    assert readings["GPU-bbbb"].energy_joules is None  # NOT_SUPPORTED: an older board
    assert readings["GPU-bbbb"].power_watts == 100.0
