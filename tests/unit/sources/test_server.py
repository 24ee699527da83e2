import gzip

import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.sources.fetch import Fetcher, FetchError
from ml_cost_exporter.sources.server import ServerSource
from tests.conftest import ManualClock
from tests.support.http import LoopbackServer, Reply, Request

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def source_for(models_yaml: str, responses: list, clock: ManualClock | None = None, **kwargs) -> ServerSource:
    config = parse_config(f"models:\n{models_yaml}", "p.yaml")
    replies = iter(responses)

    def fetch(url: str) -> str:
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    clock = clock or ManualClock(0)
    return ServerSource("http://server/metrics", config.models, timeout=1, max_bytes=1 << 20,
                        max_series=kwargs.get("max_series", 1000), interval=15, monotonic=clock.monotonic,
                        fetch=fetch)


def model(name: str, preset: str, extra: str = "") -> str:
    return f"  - {{name: {name}, server: {{preset: {preset}, url: 'http://server/metrics'{extra}}}}}\n"


def test_triton_version_filter_keeps_one_server_side_version():
    text = ('nv_inference_request_success{model="m",version="1"} 10\n'
            'nv_inference_request_success{model="m",version="2"} 5\n')
    source = source_for(model("m", "triton", ", version: '2'"), ["", text])
    source.sample()
    assert source.sample().deltas == {("m", "latest"): {"requests": 5.0}}


def test_first_fetch_is_a_baseline_and_later_fetches_give_increases():
    source = source_for(model("m", "tgi"), ["tgi_request_success 100\n", "tgi_request_success 130\n"])
    assert source.sample().deltas == {}
    assert source.sample().deltas == {("m", "latest"): {"requests": 30.0}}


def test_a_counter_reset_counts_the_new_value_as_rate_does():
    texts = ["tgi_request_success 100\n", "tgi_request_success 130\n", "tgi_request_success 7\n",
             "tgi_request_success 10\n"]
    source = source_for(model("m", "tgi"), texts)
    got = [source.sample().deltas.get(("m", "latest"), {}).get("requests", 0.0) for _ in texts]
    assert got == [0.0, 30.0, 7.0, 3.0]


def test_a_series_that_appears_later_counts_from_zero():
    texts = ['vllm:request_success_total{finished_reason="stop",model_name="m"} 10\n',
             'vllm:request_success_total{finished_reason="stop",model_name="m"} 12\n'
             'vllm:request_success_total{finished_reason="length",model_name="m"} 4\n']
    source = source_for(model("m", "vllm"), texts)
    source.sample()
    assert source.sample().deltas == {("m", "latest"): {"requests": 6.0}}


def test_nan_negative_wrong_typed_and_garbled_samples_are_counted_and_skipped():
    text = ("tgi_request_success NaN\ntgi_request_success -5\ntgi_request_success abc\n"
            'tgi_request_success{bad label} 1\ntgi_request_success +Inf\n')
    reading = source_for(model("m", "tgi"), [text]).sample()
    assert reading.ok and reading.invalid_samples == 5 and reading.series == 0


def test_binary_garbage_is_survived():
    garbage = bytes(range(256)).decode("latin-1") * 100 + "\ntgi_request_success 3\n"
    source = source_for(model("m", "tgi"), ["tgi_request_success 1\n", garbage])
    source.sample()
    reading = source.sample()
    assert reading.ok  # the one valid line after the garbage is still read
    assert reading.deltas == {("m", "latest"): {"requests": 2.0}}


def test_series_beyond_the_cap_are_dropped_and_counted_so_memory_stays_bounded():
    lines = "".join(f'vllm:request_success_total{{finished_reason="r{i}",model_name="m"}} 1\n'
                    for i in range(100_000))
    source = source_for(model("m", "vllm"), [lines, lines], max_series=500)
    reading = source.sample()
    assert reading.series == 500 and reading.dropped_series == 99_500
    assert len(source._last) == 500


def test_failures_back_off_exponentially_and_recover():
    clock = ManualClock(0)
    fetched_at = []

    def fetch(url):
        fetched_at.append(clock.monotonic() - 1000)
        if len(fetched_at) <= 3:
            raise FetchError("connection refused")
        return "tgi_request_success 1\n"

    config = parse_config("models:\n" + model("m", "tgi"), "p.yaml")
    source = ServerSource("http://server/metrics", config.models, timeout=1, max_bytes=1 << 20, max_series=10,
                          interval=15, monotonic=clock.monotonic, fetch=fetch)
    for _ in range(8):
        source.sample()
        clock.advance(15)
    # Ticks every 15 s; after the 2nd failure one tick is skipped, after the 3rd three are.
    assert fetched_at == [0, 15, 30, 75, 90, 105]
    assert source.last_reading.ok


def test_fetch_refuses_oversized_bodies_and_reads_gzip(tmp_path):
    body = b"tgi_request_success 1\n" * 1000

    def answer(request: Request) -> Reply:
        if request.path == "/gz":
            return Reply(body=gzip.compress(body), headers=(("Content-Encoding", "gzip"),))
        return Reply(200 if request.path != "/500" else 500, body)

    server = LoopbackServer(answer)
    base = server.base
    try:
        assert Fetcher(base + "/gz", 2, len(body)).fetch() == body.decode()
        with pytest.raises(FetchError, match="larger than 1000 bytes"):
            Fetcher(base + "/plain", 2, 1000).fetch()
        with pytest.raises(FetchError, match="HTTP 500"):
            Fetcher(base + "/500", 2, len(body)).fetch()
    finally:
        server.close()
    with pytest.raises(FetchError, match="ConnectionRefusedError"):
        Fetcher(base + "/gone", 1, 1000).fetch()
