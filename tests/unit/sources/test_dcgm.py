"""The dcgm-exporter GPU source, read over HTTP from a local server serving dcgm-exporter's real exposition."""

from __future__ import annotations

import re

import pytest

from ml_cost_exporter.config.catalog import embedded_catalog
from ml_cost_exporter.config.schema import DcgmSelection
from ml_cost_exporter.sources.dcgm import DcgmGpuSource, expand_url, parse_exposition
from tests.conftest import FIXTURES, ManualClock
from tests.support.http import LoopbackServer, Reply

NODE = (FIXTURES / "dcgm" / "node-h100-mig.txt").read_text()
MIB = 1024**2
GPU0 = "GPU-5b7c1c2e-8a1f-4b1e-9a3e-0c1d2e3f4a50"
GPU3 = "GPU-c4c7f4f8-af86-6966-c0b2-7c1e40c18347"
VLLM_POD = {"POD_NAME": "vllm-7d9f8c6b5-x2kqp", "POD_NAMESPACE": "ml-serving"}
TEI_POD = {"POD_NAME": "tei-5c8d7f9b4-m7r2t", "POD_NAMESPACE": "ml-serving"}


class Exporter(LoopbackServer):
    """A stand-in dcgm-exporter: a loopback HTTP server whose body (or status) the test sets."""

    def __init__(self) -> None:
        self.body, self.status = NODE, 200
        super().__init__(lambda _: Reply(self.status, self.body.encode()))


@pytest.fixture
def exporter():
    server = Exporter()
    yield server
    server.close()


def make_source(url: str, environ: dict, clock: ManualClock | None = None, **selection) -> DcgmGpuSource:
    settings = DcgmSelection(url=url, pod=selection.get("pod"), namespace=selection.get("namespace"),
                             uuids=selection.get("uuids"))
    clock = clock or ManualClock(0)
    return DcgmGpuSource(settings, timeout=2, max_bytes=1 << 20, max_series=selection.get("max_series", 1000),
                         interval=15, environ=environ, monotonic=clock.monotonic, catalog=embedded_catalog())


def lines_of(pod: str, text: str = NODE) -> list[str]:
    return [line for line in text.splitlines() if f'pod="{pod}"' in line]


def test_the_pods_whole_gpu_is_read_in_base_units(exporter):
    sample = make_source(exporter.url, VLLM_POD).sample()
    assert sample.ok, sample.error
    (gpu,) = sample.gpus
    assert (gpu.index, gpu.uuid, gpu.name) == ("0", GPU0, "NVIDIA H100 80GB HBM3")
    assert gpu.utilization == pytest.approx(0.87)  # DCGM_FI_DEV_GPU_UTIL is a percentage
    assert gpu.memory_used_bytes == 77689 * MIB  # FB fields are MiB
    assert gpu.memory_total_bytes == (77689 + 3870) * MIB
    assert gpu.power_watts == pytest.approx(512.337)
    assert gpu.gpu_units == 1.0 and gpu.mig_gpu_instance == ""


def test_a_pods_mig_instance_is_priced_by_its_share_and_uses_the_engine_activity(exporter):
    sample = make_source(exporter.url, TEI_POD).sample()
    assert sample.ok, sample.error
    (mig,) = sample.gpus
    assert (mig.uuid, mig.mig_gpu_instance) == (GPU3, "1")
    assert mig.utilization == pytest.approx(0.528811)  # no GPU_UTIL in MIG mode: DCGM_FI_PROF_GR_ENGINE_ACTIVE
    assert mig.memory_total_bytes == (30976 + 9216) * MIB
    assert mig.gpu_units == pytest.approx(40192 / 81920)  # a 3g.40gb slice of an 80 GiB H100
    assert mig.power_watts is None  # the board's power is not the slice's


def test_another_pods_gpus_are_never_taken(exporter):
    # The trainer pod's name in the wrong namespace, then a pod dcgm-exporter does not know.
    for environ in ({"POD_NAME": "llama-ft-0", "POD_NAMESPACE": "ml-serving"},
                    {"POD_NAME": "vllm-7d9f8c6b5-zzzzz", "POD_NAMESPACE": "ml-serving"}):
        source = make_source(exporter.url, environ)
        sample = source.sample()
        assert sample.ok and sample.gpus == ()
        assert f"pod ml-serving/{environ['POD_NAME']}" in source.empty_hint


def test_config_pod_wins_over_the_environment_and_uuids_select_several_gpus(exporter):
    source = make_source(exporter.url, VLLM_POD, pod="llama-ft-0", namespace="research")
    assert [g.index for g in source.sample().gpus] == ["1"]
    source = make_source(exporter.url, VLLM_POD, uuids=(GPU0, "2"))
    assert sorted(g.index for g in source.sample().gpus) == ["0", "2"]
    # The MIG GPU's own UUID selects each of its instances once, never the board on top of them.
    source = make_source(exporter.url, {}, uuids=(GPU3,))
    assert sorted(g.mig_gpu_instance for g in source.sample().gpus) == ["1", "2", "9"]


def test_without_a_pod_or_uuids_the_serving_processes_devices_are_used_else_it_fails_clearly(exporter):
    source = make_source(exporter.url, {})
    sample = source.sample()
    assert not sample.ok and "POD_NAME and POD_NAMESPACE" in sample.error
    source.set_visible((GPU0,))
    assert [g.uuid for g in source.sample().gpus] == [GPU0]


def test_the_url_takes_the_node_address_from_the_environment(exporter):
    template = f"http://${{NODE_IP}}:{exporter.port}/metrics"
    assert expand_url(template, {"NODE_IP": "127.0.0.1"}) == exporter.url
    assert make_source(template, {**VLLM_POD, "NODE_IP": "127.0.0.1"}).sample().ok
    sample = make_source(template, VLLM_POD).sample()
    assert not sample.ok and sample.error == f"gpu.dcgm.url {template}: environment variable NODE_IP is not set"


def hostile(text: str, pattern: str, replacement: str, only_pod: str = "vllm-7d9f8c6b5-x2kqp") -> str:
    """`text` with `pattern` replaced on the lines of one pod: the damage stays local, as in a real fault."""
    return "\n".join(re.sub(pattern, replacement, line) if f'pod="{only_pod}"' in line else line
                     for line in text.splitlines()) + "\n"


ENGINE_ACTIVE = 0.812408  # what a whole GPU's utilization falls back to when GPU_UTIL is unusable


@pytest.mark.parametrize(("name", "body", "field", "expected"), [
    ("NaN", hostile(NODE, r"^(DCGM_FI_DEV_GPU_UTIL\{.*\}) 87$", r"\1 NaN"), "utilization", ENGINE_ACTIVE),
    ("not a number", hostile(NODE, r"^(DCGM_FI_DEV_POWER_USAGE\{.*\}) \S+$", r"\1 W512"), "power_watts", None),
    ("out of range", hostile(NODE, r"^(DCGM_FI_DEV_GPU_UTIL\{.*\}) 87$", r"\1 250"), "utilization", ENGINE_ACTIVE),
    ("negative", hostile(NODE, r"^(DCGM_FI_DEV_POWER_USAGE\{.*\}) \S+$", r"\1 -5"), "power_watts", None),
    ("+Inf", hostile(NODE, r"^(DCGM_FI_DEV_POWER_USAGE\{.*\}) \S+$", r"\1 +Inf"), "power_watts", None),
    ("broken labels", hostile(NODE, r'^DCGM_FI_DEV_GPU_UTIL\{gpu="0",', 'DCGM_FI_DEV_GPU_UTIL{gpu=0,'),
     "utilization", ENGINE_ACTIVE),
    ("no UUID label", hostile(NODE, r'^(DCGM_FI_DEV_POWER_USAGE\{gpu="0",)UUID="[^"]*",', r"\1"),
     "power_watts", None),
    ("no utilization at all", hostile(hostile(NODE, r"^(DCGM_FI_DEV_GPU_UTIL\{.*\}) 87$", r"\1 NaN"),
                                      r"^(DCGM_FI_PROF_GR_ENGINE_ACTIVE\{.*\}) \S+$", r"\1 -1"), "utilization", None),
], ids=lambda value: value if isinstance(value, str) and len(value) < 40 else "")
def test_a_bad_sample_leaves_its_reading_absent_counts_it_and_keeps_the_rest(exporter, name, body, field,
                                                                          expected):
    exporter.body = body
    source = make_source(exporter.url, VLLM_POD)
    sample = source.sample()
    assert sample.ok, sample.error
    (gpu,) = sample.gpus
    assert getattr(gpu, field) == (None if expected is None else pytest.approx(expected)), name
    assert source.invalid_samples_total == (2 if name == "no utilization at all" else 1)
    assert gpu.memory_used_bytes == 77689 * MIB  # the other fields of the GPU are still read


def test_a_gpu_without_memory_fields_fails_the_sample_and_names_the_gpu(exporter):
    exporter.body = "\n".join(line for line in NODE.splitlines()
                              if not (line.startswith("DCGM_FI_DEV_FB_USED") and GPU0 in line)) + "\n"
    sample = make_source(exporter.url, VLLM_POD).sample()
    assert not sample.ok and sample.gpus == ()
    assert sample.error == f"dcgm-exporter: GPU 0 ({GPU0}): no valid DCGM_FI_DEV_FB_USED and DCGM_FI_DEV_FB_FREE"


def test_a_gpu_that_disappears_leaves_no_reading_and_a_hint(exporter):
    source = make_source(exporter.url, VLLM_POD)
    assert len(source.sample().gpus) == 1
    exporter.body = "\n".join(line for line in NODE.splitlines() if GPU0 not in line) + "\n"
    sample = source.sample()
    assert sample.ok and sample.gpus == () and "pod ml-serving/vllm-7d9f8c6b5-x2kqp" in source.empty_hint


def test_an_exporter_outside_kubernetes_mode_is_named_as_the_cause(exporter):
    exporter.body = re.sub(r',container="[^"]*",namespace="[^"]*",pod="[^"]*"', "", NODE)
    source = make_source(exporter.url, VLLM_POD)
    assert source.sample().gpus == ()
    assert "labels no GPU with a pod" in source.empty_hint and "DCGM_EXPORTER_KUBERNETES" in source.empty_hint
    # Old releases write empty pod labels on unassigned GPUs; they are unassigned, not a pod named "".
    exporter.body = NODE.replace('DCGM_FI_DRIVER_VERSION="550.90.07"}',
                                 'DCGM_FI_DRIVER_VERSION="550.90.07",container="",namespace="",pod=""}')
    assert [g.index for g in make_source(exporter.url, {"POD_NAME": "", "POD_NAMESPACE": ""},
                                         uuids=("2",)).sample().gpus] == ["2"]


@pytest.mark.parametrize("body", ["", "\x00\xff garbage {{{\n", "# EOF\n", "DCGM_FI_DEV_FB_USED 12\n"])
def test_an_empty_or_garbage_body_is_a_read_with_no_gpus(exporter, body):
    exporter.body = body
    source = make_source(exporter.url, VLLM_POD)
    sample = source.sample()
    assert sample.ok and sample.gpus == ()
    assert "exports no GPU at all" in source.empty_hint


def test_devices_over_the_cap_are_dropped_and_counted(exporter):
    exporter.body = "".join(f'DCGM_FI_DEV_FB_USED{{gpu="{i}",UUID="GPU-{i}"}} 1\n' for i in range(50))
    source = make_source(exporter.url, {}, uuids=("GPU-0",), max_series=10)
    assert len(source.sample().gpus) == 0  # GPU-0 has no FB_FREE: the sample fails, but parsing is bounded
    assert source.dropped_series_total == 40


def test_an_unreachable_exporter_fails_with_its_url_backs_off_and_recovers(exporter):
    clock = ManualClock(0)
    source = make_source(exporter.url, VLLM_POD, clock)
    exporter.status = 500
    sample = source.sample()
    assert not sample.ok and sample.gpus == () and sample.error.startswith(f"dcgm-exporter {exporter.url}: HTTP 500")
    exporter.status = 200
    clock.advance(15)
    assert source.sample().ok  # the first failure backs off for one interval only
    exporter.close()
    for seconds in (15, 15):
        clock.advance(seconds)
        assert not source.sample().ok
    clock.advance(15)
    assert "Connection" in source.sample().error  # still backing off: the last error is repeated


def test_without_power_usage_the_energy_counter_gives_the_average_power(exporter):
    body = "\n".join(line for line in NODE.splitlines() if not line.startswith("DCGM_FI_DEV_POWER_USAGE"))
    clock = ManualClock(0)
    source = make_source(exporter.url, VLLM_POD, clock)
    exporter.body = body
    assert source.sample().gpus[0].power_watts is None  # one energy reading is not a rate
    exporter.body = body.replace(" 93847561203", f" {93847561203 + 15_000_000}")  # +15 kJ in mJ
    clock.advance(30)
    assert source.sample().gpus[0].power_watts == pytest.approx(500.0)


def test_parsing_the_node_finds_every_entity_with_its_pod():
    exposition = parse_exposition(NODE)
    assert exposition.invalid_samples == 0 and exposition.pod_labelled
    pods = {(d.gpu, d.mig_instance, d.mig_profile, d.pod) for d in exposition.devices}
    assert pods == {("0", "", "", "vllm-7d9f8c6b5-x2kqp"), ("1", "", "", "llama-ft-0"), ("2", "", "", ""),
                    ("3", "1", "3g.40gb", "tei-5c8d7f9b4-m7r2t"), ("3", "9", "1g.10gb", "tei-5c8d7f9b4-q9w4z"),
                    ("3", "2", "3g.40gb", "")}


def test_the_boards_energy_counter_is_read_in_joules_and_measures_the_interval(exporter):
    clock = ManualClock(0)
    exporter.body = NODE
    whole = make_source(exporter.url, VLLM_POD, clock).sample().gpus[0]
    assert whole.energy_joules == pytest.approx(93847561203 / 1000.0)
    exporter.body = NODE + "\n"
    from ml_cost_exporter.sources.energy import interval_energy_joules

    before = make_source(exporter.url, VLLM_POD, clock).sample()
    exporter.body = NODE.replace(" 93847561203", f" {93847561203 + 15_000_000}")
    after = make_source(exporter.url, VLLM_POD, clock).sample()
    assert interval_energy_joules(before, after, 30.0) == pytest.approx(15_000.0)
