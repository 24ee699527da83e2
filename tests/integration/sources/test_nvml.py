"""The GPU source through the real nvidia-ml-py bindings and the compiled fake libnvidia-ml.so."""

import pytest

from ml_cost_exporter.sources.nvml import NvmlGpuSource, visible_devices
from tests.conftest import A100, GIB, ManualClock

TWO_GPUS = (f"gpu 0 55 {10 * GIB} {80 * GIB} 250000 0 0 GPU-aaaa {A100}",
            f"gpu 1 20 {5 * GIB} {80 * GIB} 100000 0 0 GPU-bbbb {A100}")


@pytest.fixture
def source_factory(fake_nvml):
    sources = []

    def make(**kwargs) -> NvmlGpuSource:
        kwargs.setdefault("environ", {})
        source = NvmlGpuSource(**kwargs)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def test_readings_come_through_the_real_bindings(fake_nvml, source_factory):
    fake_nvml.write("init 0", *TWO_GPUS)
    sample = source_factory().sample()
    assert sample.ok
    first, second = sample.gpus
    assert (first.index, first.uuid, first.name) == ("0", "GPU-aaaa", A100)
    assert first.utilization == pytest.approx(0.55) and first.power_watts == pytest.approx(250.0)
    assert (first.memory_used_bytes, first.memory_total_bytes) == (10 * GIB, 80 * GIB)
    assert second.utilization == pytest.approx(0.20)


def test_visible_devices_restrict_the_gpus_by_index_or_uuid(fake_nvml, source_factory):
    fake_nvml.write("init 0", *TWO_GPUS)
    by_env = source_factory(environ={"NVIDIA_VISIBLE_DEVICES": "GPU-bbbb"}).sample()
    assert [g.uuid for g in by_env.gpus] == ["GPU-bbbb"]
    by_config = source_factory(visible=("0",), environ={"CUDA_VISIBLE_DEVICES": "1"}).sample()
    assert [g.uuid for g in by_config.gpus] == ["GPU-aaaa"]


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"NVIDIA_VISIBLE_DEVICES": "all"}, None),
    ({"NVIDIA_VISIBLE_DEVICES": "none"}, ()),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, ()),
    ({"NVIDIA_VISIBLE_DEVICES": "GPU-a, GPU-b"}, ("GPU-a", "GPU-b")),
    ({"CUDA_VISIBLE_DEVICES": "0,2"}, ("0", "2")),
    ({"NVIDIA_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "0"}, ("1",)),
])
def test_visible_devices_follow_the_container_runtime_conventions(environ, expected):
    assert visible_devices(None, environ) == expected


def test_nvml_init_failure_reports_failure_and_retries_with_backoff(fake_nvml, source_factory):
    clock = ManualClock(0)
    fake_nvml.write("init 9")  # NVML_ERROR_DRIVER_NOT_LOADED
    source = source_factory(monotonic=clock.monotonic, backoff_initial_seconds=10, backoff_max_seconds=40)
    failed = source.sample()
    assert not failed.ok and failed.gpus == () and "nvmlInit failed" in failed.error
    fake_nvml.write("init 0", *TWO_GPUS)
    clock.advance(5)
    assert "next init attempt" in source.sample().error  # still backing off: NVML not called
    clock.advance(5)
    recovered = source.sample()
    assert recovered.ok and len(recovered.gpus) == 2


def test_backoff_doubles_up_to_its_cap(fake_nvml, source_factory):
    clock = ManualClock(0)
    fake_nvml.write("init 9")
    source = source_factory(monotonic=clock.monotonic, backoff_initial_seconds=10, backoff_max_seconds=40)
    attempts = []
    for second in range(0, 200):
        if "nvmlInit failed" in (source.sample().error or ""):
            attempts.append(second)
        clock.advance(1)
    assert attempts[:5] == [0, 10, 30, 70, 110]


def test_a_gpu_lost_mid_run_fails_the_sample_drops_its_series_and_recovers(fake_nvml, source_factory):
    clock = ManualClock(0)
    fake_nvml.write("init 0", *TWO_GPUS)
    source = source_factory(monotonic=clock.monotonic, backoff_initial_seconds=1)
    assert source.sample().ok
    fake_nvml.write("init 0", TWO_GPUS[0], TWO_GPUS[1].replace(" 0 0 GPU-bbbb", " 1 0 GPU-bbbb"))
    lost = source.sample()
    assert not lost.ok and "GPU 1" in lost.error and "lost" in lost.error.lower()
    assert [g.uuid for g in lost.gpus] == ["GPU-aaaa"]  # the healthy GPU is still read; the lost one is absent
    fake_nvml.write("init 0", *TWO_GPUS)
    clock.advance(2)
    assert source.sample().ok


def test_mig_devices_visible_to_the_pod_are_read_with_their_instance_ids(fake_nvml, source_factory):
    fake_nvml.write("init 0",
                    f"gpu 0 -1 0 {80 * GIB} 300000 0 1 GPU-parent {A100}",
                    f"mig 0 0 1 0 {2 * GIB} {40 * GIB} MIG-one",
                    f"mig 0 2 2 0 {1 * GIB} {20 * GIB} MIG-two")
    sample = source_factory(environ={"NVIDIA_VISIBLE_DEVICES": "MIG-one"}).sample()
    assert sample.ok
    (mig,) = sample.gpus
    assert (mig.uuid, mig.index, mig.mig_gpu_instance, mig.mig_compute_instance) == ("MIG-one", "0", "1", "0")
    assert mig.utilization is None and mig.power_watts is None
    assert mig.gpu_units == pytest.approx(0.5)
    whole = source_factory().sample()
    assert [g.uuid for g in whole.gpus] == ["GPU-parent"]  # the whole GPU is the pod's: slices not repeated
    assert whole.gpus[0].utilization is None  # MIG-mode GPUs report no whole-GPU utilization
