"""Each source reads its peer with the config's credentials, TLS and redirects; a gateway reads every replica.

LiteLLM mounts its metrics at /metrics/ (so /metrics answers 307) and may want an API key there: a loopback
server that behaves so is read by the litellm gateway preset. Bad input fails that one source in one line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_cost_exporter.config.catalog import embedded_catalog
from ml_cost_exporter.config.schema import DcgmSelection, parse_config
from ml_cost_exporter.httpclient import Authorization, HttpSettings
from ml_cost_exporter.sources.dcgm import DcgmGpuSource
from ml_cost_exporter.sources.gateway import GatewaySource
from ml_cost_exporter.sources.replicas import resolve_addresses
from ml_cost_exporter.sources.server import ServerSource
from tests.conftest import FIXTURES, ManualClock
from tests.loopback import LoopbackHttp, needs, ok, redirect

KEY = ("llama", "latest")
API_KEY = "sk-litellm-master-key"


def tokens(tenant: str, value: int) -> str:
    return (f'litellm_input_tokens_metric_total{{requested_model="llama-8b",team_alias="{tenant}"}} {value}\n'
            f'litellm_output_tokens_metric_total{{requested_model="llama-8b",team_alias="{tenant}"}} {value // 10}\n')


@pytest.fixture
def litellm() -> Iterator[LoopbackHttp]:
    server = LoopbackHttp({"/metrics": redirect("/metrics/")})
    server.routes["/metrics/"] = needs(f"Bearer {API_KEY}", ok(tokens("search", 1000)))
    yield server
    server.close()


def gateway_source(tmp_path: Path, keys: str, clock: ManualClock, **kwargs) -> GatewaySource:
    config = parse_config(f"""
models: [{{name: llama}}]
tenants:
  gateways:
    - {{preset: litellm, models: {{llama: llama-8b}}, {keys}}}
""", "c.yaml")
    return GatewaySource(config.tenants.gateways[0], 1.0, 1 << 20, 1000, 15.0, monotonic=clock.monotonic, **kwargs)


def test_the_litellm_preset_reads_metrics_behind_a_redirect_and_an_api_key(litellm, tmp_path, clock):
    (tmp_path / "key").write_text(API_KEY + "\n")
    source = gateway_source(tmp_path, f"url: '{litellm.base}/metrics', authorization: "
                                      f"{{type: Bearer, credentials_file: '{tmp_path / 'key'}'}}", clock)
    assert source.sample().ok  # the baseline
    litellm.routes["/metrics/"] = needs(f"Bearer {API_KEY}", ok(tokens("search", 1500)))
    reading = source.sample()
    assert reading.ok, reading.error
    assert reading.tokens == {(KEY, "search", "input"): 500.0, (KEY, "search", "output"): 50.0}


def _token_missing(tmp_path: Path, base: str) -> tuple[str, str]:
    return (f"url: '{base}/metrics', authorization: {{credentials_file: '{tmp_path}/absent'}}",
            f"authorization.credentials_file {tmp_path}/absent: cannot read: No such file or directory")


def _token_empty(tmp_path: Path, base: str) -> tuple[str, str]:
    (tmp_path / "empty").write_text("")
    return (f"url: '{base}/metrics', authorization: {{credentials_file: '{tmp_path}/empty'}}",
            f"authorization.credentials_file {tmp_path}/empty is empty")


def _token_unreadable(tmp_path: Path, base: str) -> tuple[str, str]:
    return (f"url: '{base}/metrics', authorization: {{credentials_file: '{tmp_path}'}}",
            f"authorization.credentials_file {tmp_path}: cannot read: Is a directory")


def _no_key(tmp_path: Path, base: str) -> tuple[str, str]:
    return f"url: '{base}/metrics'", "HTTP 401 Unauthorized (no credentials configured)"


def _wrong_key(tmp_path: Path, base: str) -> tuple[str, str]:
    (tmp_path / "key").write_text("sk-wrong\n")
    return (f"url: '{base}/metrics', authorization: {{credentials_file: '{tmp_path}/key'}}",
            "HTTP 401 Unauthorized (the credentials were refused)")


def _other_host(tmp_path: Path, base: str) -> tuple[str, str]:
    port = base.rpartition(":")[2]
    return (f"url: '{base}/elsewhere'", f"HTTP 307 redirect to another host refused: http://127.0.0.2:{port} "
                                        f"(redirects are followed only within http://127.0.0.1:{port})")


def _loop(tmp_path: Path, base: str) -> tuple[str, str]:
    return f"url: '{base}/loop'", "redirect loop: /loop was already visited"


@pytest.mark.parametrize("fault", [_token_missing, _token_empty, _token_unreadable, _no_key, _wrong_key,
                                   _other_host, _loop], ids=lambda f: f.__name__[1:])
def test_bad_input_fails_the_gateway_in_one_line_naming_it(litellm, tmp_path, clock, caplog, fault):
    litellm.routes.update({"/elsewhere": redirect(f"http://127.0.0.2:{litellm.port}/metrics/"),
                           "/loop": redirect("/loop")})
    keys, error = fault(tmp_path, litellm.base)
    source = gateway_source(tmp_path, keys, clock)
    with caplog.at_level(logging.WARNING):
        reading = source.sample()
    assert (reading.ok, reading.error) == (False, error)
    assert API_KEY not in caplog.text and "sk-wrong" not in caplog.text
    url = f"{litellm.base}/{'elsewhere' if fault is _other_host else 'loop' if fault is _loop else 'metrics'}"
    assert [r.getMessage() for r in caplog.records] == [f"cannot read gateway {url}: {error} (failure 1)"]


@pytest.fixture
def replicas() -> Iterator[list[LoopbackHttp]]:
    """Two gateway replicas on one port, at 127.0.0.1 and 127.0.0.2, as a headless Service's pods would be."""
    first = LoopbackHttp({})
    for _ in range(20):  # the port is free on 127.0.0.1; almost always on 127.0.0.2 too
        try:
            second = LoopbackHttp({}, host="127.0.0.2", port=first.port)
            break
        except OSError:
            first.close()
            first = LoopbackHttp({})
    else:
        raise AssertionError("no port free on both loopback addresses")
    yield [first, second]
    first.close()
    second.close()


def serve(servers: list[LoopbackHttp], *values: int) -> None:
    for server, value in zip(servers, values, strict=True):
        server.routes["/metrics/"] = ok(tokens("search", value))


def test_listed_replicas_are_each_read_and_their_increases_summed(replicas, tmp_path, clock):
    urls = ", ".join(f"'{server.base}/metrics/'" for server in replicas)
    source = gateway_source(tmp_path, f"urls: [{urls}]", clock)
    serve(replicas, 1000, 7000)
    assert source.sample().ok and source.name == f"gateway:{replicas[0].base}/metrics/"
    serve(replicas, 1100, 7020)  # through one Service URL this would read as +6100, then -6080
    assert source.sample().tokens == {(KEY, "search", "input"): 120.0, (KEY, "search", "output"): 12.0}


def test_a_headless_service_name_is_resolved_each_read_and_every_address_read(replicas, tmp_path, clock):
    answers = [["127.0.0.1", "127.0.0.2"], ["127.0.0.1"], ["127.0.0.1", "127.0.0.2"]]
    asked = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers[len(asked) - 1]

    port = replicas[0].port
    source = gateway_source(tmp_path, f"url: 'http://litellm-headless.test:{port}/metrics/', replicas: dns", clock,
                            resolve=resolve)
    serve(replicas, 1000, 7000)
    assert source.sample().ok
    serve(replicas, 1100, 7050)
    assert source.sample().tokens[(KEY, "search", "input")] == 100.0  # 127.0.0.2 is out of DNS this time
    serve(replicas, 1200, 7100)
    assert source.sample().tokens[(KEY, "search", "input")] == 200.0  # back: only its rise since it was last read
    assert asked == [("litellm-headless.test", port)] * 3
    assert {seen.headers["Host"] for server in replicas for seen in server.requests} == {
        f"litellm-headless.test:{port}"}


def test_a_replica_that_fails_fails_the_read_naming_it_and_loses_nothing(replicas, tmp_path, clock):
    source = gateway_source(tmp_path, f"url: 'http://gw.test:{replicas[0].port}/metrics/', replicas: dns", clock,
                            resolve=lambda host, port: ["127.0.0.1", "127.0.0.2"])
    serve(replicas, 1000, 7000)
    assert source.sample().ok
    replicas[1].routes["/metrics/"] = lambda seen: (503, {}, b"")
    reading = source.sample()
    assert (reading.ok, reading.error) == (False, "replica 127.0.0.2: HTTP 503 Service Unavailable")
    clock.advance(15)
    serve(replicas, 1000, 7040)
    assert source.sample().tokens[(KEY, "search", "input")] == 40.0


def test_the_default_resolver_gives_every_address_and_an_empty_answer_is_one_line(tmp_path, clock):
    assert "127.0.0.1" in resolve_addresses("localhost", 4000)
    reading = gateway_source(tmp_path, "url: 'http://gw.test:4000/metrics/', replicas: dns", clock,
                             resolve=lambda host, port: []).sample()
    assert (reading.ok, reading.error) == (False, "gw.test resolves to no address")


def test_a_hung_dns_lookup_costs_the_read_its_deadline_and_is_never_started_twice(tmp_path, clock):
    release, calls = threading.Event(), []

    def hung(host: str, port: int) -> list[str]:
        calls.append(host)
        release.wait(30)
        return []

    source = gateway_source(tmp_path, "url: 'http://gw.test:4000/metrics/', replicas: dns", clock, resolve=hung)
    for _ in range(2):
        reading = source.sample()
        assert (reading.ok, reading.error) == (False, "cannot resolve gw.test within 1s")
        clock.advance(30)  # past the backoff
    release.set()
    assert calls == ["gw.test"]


def test_a_model_server_and_dcgm_exporter_are_read_with_their_credentials(tmp_path):
    (tmp_path / "token").write_text("vllm-token\n")
    vllm = LoopbackHttp({"/metrics": needs("Bearer vllm-token", ok(
        'vllm:request_success_total{model_name="llama",finished_reason="stop"} 5\n'))})
    dcgm = LoopbackHttp({"/metrics": needs("Bearer vllm-token", ok((FIXTURES / "dcgm" / "node-h100-mig.txt")
                                                                     .read_text()))})
    try:
        config = parse_config(f"""
models:
  - name: llama
    server: {{preset: vllm, url: '{vllm.base}/metrics', authorization: {{credentials_file: '{tmp_path}/token'}}}}
""", "c.yaml")
        server = ServerSource(f"{vllm.base}/metrics", config.models, 1.0, 1 << 20, 1000, 15.0)
        assert server.sample().ok, server.last_reading.error
        selection = DcgmSelection(f"{dcgm.base}/metrics", None, None, ("0",),
                                  HttpSettings(Authorization("Bearer", str(tmp_path / "token"))))
        gpus = DcgmGpuSource(selection, 1.0, 1 << 20, 1000, 15.0, environ={}, catalog=embedded_catalog())
        sample = gpus.sample()
        assert sample.ok and [g.index for g in sample.gpus] == ["0"], sample.error
    finally:
        vllm.close()
        dcgm.close()
