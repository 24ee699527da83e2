"""Every preset against its server's real exposition, through the live path: a loopback HTTP server
serves the fixture and the real ServerSource fetches and ingests it. Hostile variants of each fixture
(resets, garbled values, relabelled and unlabelled series) run the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from ml_cost_exporter.config.presets import embedded_presets
from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.sources.server import ServerSource
from tests.conftest import FIXTURES, REPO, ManualClock
from tests.support.http import LoopbackServer, Reply

SERVERS = FIXTURES / "servers"


class ScriptedServer(LoopbackServer):
    """A loopback /metrics endpoint answering each GET with the next body of a script."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        super().__init__(lambda _: Reply(body=self.next_body().encode()))

    def next_body(self) -> str:
        return self.bodies.pop(0) if len(self.bodies) > 1 else self.bodies[0]


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()  # one for the module: each test sets its own script
    yield scripted
    scripted.close()


# preset, fixture, models on the URL as (name, server.model), expected deltas of a freshly started server
CASES = {
    "vllm": ("vllm.txt", [("llama", "meta-llama/Llama-3.1-8B-Instruct")],
             {"llama": {"requests": 1234, "failed_requests": 75, "prompt_tokens": 152340,
                        "generation_tokens": 88211, "cached_prompt_tokens": 61440, "prefill_seconds": 96.25,
                        "decode_seconds": 1874.5}}),
    "triton": ("triton.txt", [("resnet50", "resnet50"), ("bert", "bert")],
               {"resnet50": {"requests": 420, "failed_requests": 8, "compute_seconds": 1.5},
                "bert": {"requests": 77, "compute_seconds": 0.5}}),
    "triton-trtllm": ("triton-trtllm.txt", [("llama", "tensorrt_llm")],
                      {"llama": {"requests": 500, "failed_requests": 7, "prompt_tokens": 64200,
                                 "generation_tokens": 31877}}),
    "torchserve": ("torchserve.txt", [("mnist", "mnist")], {"mnist": {"requests": 85, "failed_requests": 6}}),
    "tgi": ("tgi.txt", [("falcon", "falcon")],
            {"falcon": {"requests": 55, "failed_requests": 3, "prompt_tokens": 2200, "generation_tokens": 5100}}),
    "kserve": ("kserve.txt", [("sklearn-iris", "sklearn-iris")],
               {"sklearn-iris": {"requests": 246, "failed_requests": 4, "compute_seconds": 3.2}}),
    "rayserve": ("rayserve.txt", [("Translator", "Translator")],
                 {"Translator": {"requests": 39, "failed_requests": 3}}),
    "bentoml": ("bentoml.txt", [("iris_classifier", "iris_classifier")],
                {"iris_classifier": {"requests": 42, "failed_requests": 3}}),
    "sglang": ("sglang.txt", [("qwen", "Qwen/Qwen2.5-7B-Instruct")],
               {"qwen": {"requests": 795, "failed_requests": 17, "prompt_tokens": 98120,
                         "generation_tokens": 40311, "cached_prompt_tokens": 52002, "prefill_seconds": 120.5,
                         "decode_seconds": 310.25}}),
    "tei": ("tei.txt", [("bge", "bge")], {"bge": {"requests": 328, "failed_requests": 4, "prompt_tokens": 19680}}),
    "trtllm-serve": ("trtllm-serve.txt", [("llama", "llama")],
                     {"llama": {"requests": 960, "failed_requests": 28, "prompt_tokens": 412000,
                                "generation_tokens": 188500, "cached_prompt_tokens": 96000, "prefill_seconds": 210.5,
                                "decode_seconds": 3050.25}}),
    "llamacpp": ("llamacpp.txt", [("gemma", "gemma")],
                 {"gemma": {"prompt_tokens": 16185, "generation_tokens": 3940, "compute_seconds": 71.136}}),
    "fastapi": ("fastapi.txt", [("classifier", "/predict"), ("embedder", "/embed")],
                {"classifier": {"requests": 120, "failed_requests": 4}, "embedder": {"requests": 33}}),
    # The job's own counters as prometheus_client exposes them (the expected-epochs gauge gives no delta).
    "training": ("training.txt", [("finetune", "finetune")],
                 {"finetune": {"samples": 128000, "steps": 4000, "epochs": 2.5, "training_tokens": 65536000}}),
    # ml_cost_exporter.instrument's counters, rendered by prometheus_client.
    "python": ("python.txt", [("chat", "chat"), ("embed", "embed")],
               {"chat": {"requests": 40, "failed_requests": 4, "prompt_tokens": 5200, "generation_tokens": 9100,
                         "compute_seconds": 18.5, "cache_hits": 12},
                "embed": {"requests": 25, "failed_requests": 2, "prompt_tokens": 800, "compute_seconds": 1.25}}),
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^\n]*\})?([ \t]+)(\S+)", re.MULTILINE)


def source_for(preset: str, models: list[tuple[str, str]], url: str, max_series: int = 1000) -> ServerSource:
    lines = "".join(f"  - {{name: '{name}', server: {{preset: {preset}, url: '{url}', model: '{value}'}}}}\n"
                    for name, value in models)
    config = parse_config("models:\n" + lines, "p.yaml")
    return ServerSource(url, config.models, timeout=2, max_bytes=1 << 22, max_series=max_series, interval=15,
                        monotonic=ManualClock(0).monotonic)


def run(preset: str, server: ScriptedServer, bodies: list[str]) -> list[dict]:
    """Deltas of each fetch, keyed by model name, after the server answered `bodies` in turn."""
    _, models, _ = CASES[preset]
    server.bodies = list(bodies)
    source = source_for(preset, models, server.url)
    readings = [source.sample() for _ in bodies]
    assert all(r.ok for r in readings), [r.error for r in readings]
    for reading in readings:
        assert all(v > 0 for q in reading.deltas.values() for v in q.values()), reading.deltas
    return [{key[0]: q for key, q in r.deltas.items()} for r in readings]


def scaled(expected: dict, factor: float) -> dict:
    return {m: {q: pytest.approx(v * factor) for q, v in quantities.items()} for m, quantities in expected.items()}


def with_values(text: str, change) -> str:
    """The exposition with every sample's value replaced by change(value)."""
    return _SAMPLE.sub(lambda m: f"{m[1]}{m[2] or ''}{m[3]}{change(m[4])}", text)


def fixture(preset: str) -> str:
    return (SERVERS / CASES[preset][0]).read_text()


def test_every_embedded_preset_has_a_fixture_case_and_a_docs_entry():
    docs = (REPO / "docs" / "servers.md").read_text()
    assert set(CASES) == set(embedded_presets())
    assert [p for p in embedded_presets() if f"`{p}`" not in docs] == []


@pytest.mark.parametrize("preset", CASES)
def test_each_preset_counts_successes_failures_and_work_from_its_servers_real_exposition(preset, server):
    _, _, expected = CASES[preset]
    assert run(preset, server, ["", fixture(preset)]) == [{}, scaled(expected, 1)]


@pytest.mark.parametrize("preset", CASES)
def test_each_preset_reads_increases_and_counter_resets_as_rate_does(preset, server):
    _, _, expected = CASES[preset]
    text = fixture(preset)
    doubled = with_values(text, lambda v: repr(float(v) * 2))
    after_restart = with_values(text, lambda v: repr(float(v) / 2))
    # A training job's drop is a resume from its checkpoint: the restored progress is a baseline, not new work.
    restarted = {} if preset == "training" else scaled(expected, 0.5)
    assert run(preset, server, [text, doubled, after_restart]) == [{}, scaled(expected, 1), restarted]


@pytest.mark.parametrize("bad", ["NaN", "-1", "+Inf", "abc", "0x10"])
@pytest.mark.parametrize("preset", CASES)
def test_a_scrape_of_garbled_values_counts_nothing_and_loses_no_history(preset, bad, server):
    _, _, expected = CASES[preset]
    text = fixture(preset)
    doubled = with_values(text, lambda v: repr(float(v) * 2))
    # The garbled scrape is skipped; the next good one counts only what the counters rose by.
    assert run(preset, server, [text, with_values(text, lambda v: bad), doubled]) == [{}, {}, scaled(expected, 1)]


@pytest.mark.parametrize("preset", CASES)
def test_series_whose_label_value_changed_count_from_zero(preset, server):
    """A replica or pod restarted under a new label value: its series are new and started at zero."""
    _, _, expected = CASES[preset]
    text = fixture(preset)
    relabelled = re.sub(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?([ \t])",
                        lambda m: f'{m[1]}{{replica="r2"{"," + m[2] if m[2] else ""}}}{m[3]}', text, flags=re.MULTILINE)
    assert run(preset, server, [text, relabelled]) == [{}, scaled(expected, 1)]


@pytest.mark.parametrize("preset", [p for p in CASES if embedded_presets()[p].model_label])
def test_series_without_the_model_label_are_claimed_by_no_model(preset, server):
    text = fixture(preset)
    unlabelled = re.sub(r"\{[^\n]*\}", "", with_values(text, lambda v: repr(float(v) * 2)))
    # Only a server-wide term (TorchServe's host-level Requests5XX) still reads: it never had a model label.
    expected = {"mnist": {"failed_requests": 12.0}} if preset == "torchserve" else {}
    assert run(preset, server, [text, unlabelled]) == [{}, expected]


def test_vllm_builds_without_finished_reason_count_every_finished_request_as_served(server):
    text = ('vllm:request_success_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 10.0\n'
            'vllm:request_success_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 99.0\n')
    assert run("vllm", server, ["", text]) == [{}, {"llama": {"requests": 10.0}}]


def test_vllm_clients_that_abort_everything_give_failures_and_no_requests(server):
    text = ('vllm:request_success_total{finished_reason="abort",model_name="meta-llama/Llama-3.1-8B-Instruct"} 70\n'
            'vllm:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 900\n')
    assert run("vllm", server, ["", text]) == [{}, {"llama": {"failed_requests": 70.0, "generation_tokens": 900.0}}]


def test_triton_builds_without_a_failure_reason_count_every_failure(server):
    text = ('nv_inference_request_success{model="resnet50",version="1"} 10\n'
            'nv_inference_request_failure{model="resnet50",version="1"} 4\n')
    assert run("triton", server, ["", text])[1]["resnet50"] == {"requests": 10.0, "failed_requests": 4.0}


def test_a_difference_of_counters_never_goes_negative_and_loses_nothing(server):
    """Errors counted before their requests (replicas export at different moments) are owed, not lost."""
    def body(finished: int, aborted: int) -> str:
        model = 'model_name="Qwen/Qwen2.5-7B-Instruct"'
        return (f'sglang:num_requests_total{{{model}}} {finished}\n'
                f'sglang:num_aborted_requests_total{{{model}}} {aborted}\n')

    got = run("sglang", server, [body(10, 0), body(10, 3), body(11, 3), body(15, 4)])
    assert got == [{}, {"qwen": {"failed_requests": 3.0}}, {}, {"qwen": {"requests": 1.0, "failed_requests": 1.0}}]
    # 15 - 10 finished, 4 of them aborted: 1 success in total, as the counters say.


def test_server_wide_counters_are_not_split_between_several_models(server, caplog):
    server.bodies = ["", (SERVERS / "torchserve-multi.txt").read_text()]
    source = source_for("torchserve", [("mnist", "mnist"), ("densenet161", "densenet161")], server.url)
    assert "server-wide series Requests5XX cannot be split" in caplog.text
    source.sample()
    deltas = {key[0]: q for key, q in source.sample().deltas.items()}
    assert deltas == {"mnist": {"requests": 91.0}, "densenet161": {"requests": 12.0}}


def test_bentoml_probe_and_docs_traffic_counts_as_no_request_even_when_it_fails(server):
    """Kubernetes probes hit /livez and /readyz every few seconds; a not-ready /readyz answers 503."""
    labels = 'runner_name="iris_classifier",service_name="iris_classifier",service_version="v1"'

    def body(probes: int, served: int) -> str:
        counts = [(path, code, probes) for path, code in [
            ("/livez", 200), ("/readyz", 200), ("/readyz", 503), ("/healthz", 200), ("/docs.json", 200), ("/", 200),
            ("/api/v2/livez", 200)]] + [("/classify", 200, served)]
        return "".join(f'bentoml_service_request_total{{endpoint="{path}",http_response_code="{code}",{labels}}} {n}\n'
                       for path, code, n in counts)

    assert run("bentoml", server, [body(10, 5), body(70, 5), body(90, 7)]) == [
        {}, {}, {"iris_classifier": {"requests": 2.0}}]


def test_tei_inputs_too_long_fail_tokenization_and_are_rejections_not_failures(server):
    text = ('te_request_success{method="single"} 10\n'
            'te_request_failure{err="tokenization"} 6\n'
            'te_request_failure{err="inference"} 1\n')
    assert run("tei", server, ["", text]) == [{}, {"bge": {"requests": 10.0, "failed_requests": 1.0}}]
