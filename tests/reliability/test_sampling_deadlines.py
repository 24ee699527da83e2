"""Issue 9, case 3, and hung NVML: a slow peer fails its own collector for the tick, never the accrual."""

from __future__ import annotations

import socket
import textwrap
import threading
import time

import pytest

from ml_cost_exporter.runtime import Clocks, Runtime
from tests.conftest import A100, GIB
from tests.reliability.conftest import ScriptedPeer

SLACK = 1.0


class CountingServer:
    """A healthy TGI-style server whose request counter rises by 10 on every fetch."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, conn: socket.socket) -> None:
        with self.lock:
            self.count += 10
            body = f"tgi_request_success {self.count}\n".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def trickle(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(600):
        conn.sendall(b"#")
        time.sleep(0.1)


def config(tmp_path, healthy: str, slow: str, gpu: bool = False) -> str:
    path = tmp_path / "pricing.yaml"
    path.write_text(textwrap.dedent(f"""
        allocation: {{vcpus: 4, memory_gib: 16{', gpu: {model: a100-80gb, count: 1}' if gpu else ''}}}
        collection: {{interval_seconds: 1, server_timeout_seconds: 0.5, cost_window_seconds: 60}}
        models:
          - {{name: healthy, server: {{preset: tgi, url: '{healthy}'}}}}
          - {{name: slow, server: {{preset: tgi, url: '{slow}'}}}}
    """))
    return str(path)


def pod_usd(runtime: Runtime, now: float) -> float:
    return sum(runtime.books.ledger.snapshot(now).usd_total.values())


def pod_hourly(runtime: Runtime, now: float) -> float:
    return sum(runtime.books.ledger.snapshot(now).hourly_usd.values())


def test_a_trickling_server_neither_delays_the_tick_nor_stops_accrual(tmp_path, clock, peer):
    counting = CountingServer()
    healthy, slow = peer(counting), peer(trickle)
    runtime = Runtime(config(tmp_path, healthy.url, slow.url), frozenset({"server"}),
                      Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path)
    start = clock.wall()
    hourly = pod_hourly(runtime, start)
    try:
        for _ in range(4):
            clock.advance(1)
            began = time.monotonic()
            runtime.tick()
            assert time.monotonic() - began < 0.5 + SLACK, "the tick waited on the trickling server"
            assert runtime.state().sampling.steps["server"].success is False
        snapshot = runtime.books.ledger.snapshot(clock.wall())
        assert pod_usd(runtime, clock.wall()) == pytest.approx(hourly * 4 / 3600, rel=1e-9)
        assert snapshot.requests_total[("healthy", "latest")] == counting.count - 10  # all but the baseline
        assert snapshot.requests_total.get(("slow", "latest"), 0.0) == 0.0
    finally:
        runtime.close()


def test_a_read_that_misses_the_deadline_is_counted_when_it_comes(tmp_path, clock):
    release = threading.Event()
    calls = []

    def fetch(url: str) -> str:
        calls.append(url)
        if len(calls) == 2:
            release.wait(10)  # the second fetch hangs past the tick's deadline
            return "tgi_request_success 30\n"
        return "tgi_request_success 0\n" if len(calls) == 1 else "tgi_request_success 30\n"

    path = tmp_path / "pricing.yaml"
    path.write_text("collection: {interval_seconds: 1, server_timeout_seconds: 0.3}\n"
                    "models: [{name: m, server: {preset: tgi, url: 'http://server/metrics'}}]\n")
    runtime = Runtime(str(path), frozenset({"server"}), Clocks(clock.wall, clock.monotonic), environ={},
                      cgroup_root=tmp_path, server_fetch=fetch)
    try:
        for _ in range(3):
            clock.advance(1)
            runtime.tick()
        assert runtime.state().sampling.steps["server"].success is False
        assert len(calls) == 2  # no second read was started while the first one hung
        assert runtime.books.ledger.snapshot(clock.wall()).requests_total.get(("m", "latest"), 0.0) == 0.0
        release.set()
        clock.advance(1)
        runtime.tick()
        assert runtime.state().sampling.steps["server"].success is True
        assert runtime.books.ledger.snapshot(clock.wall()).requests_total[("m", "latest")] == 30.0
    finally:
        release.set()
        runtime.close()


def test_a_hung_gpu_fails_the_gpu_collector_and_cost_keeps_accruing_from_the_allocation(tmp_path, clock,
                                                                                         fake_nvml):
    fake_nvml.write("init 0", f"gpu 0 90 {GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}")
    path = tmp_path / "pricing.yaml"
    path.write_text("allocation: {vcpus: 4, memory_gib: 16}\ncollection: {interval_seconds: 1}\n")
    runtime = Runtime(str(path), frozenset({"gpu"}), Clocks(clock.wall, clock.monotonic),
                      environ={"NVIDIA_VISIBLE_DEVICES": "all"}, cgroup_root=tmp_path)
    try:
        assert runtime.rates.allocation.gpus == 1.0
        hourly = pod_hourly(runtime, clock.wall())
        fake_nvml.write("init 0", "hang 3000", f"gpu 0 90 {GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}")
        before = pod_usd(runtime, clock.wall())
        clock.advance(1)
        began = time.monotonic()
        runtime.tick()
        assert time.monotonic() - began < 0.5 + SLACK, "the tick waited on NVML"
        assert runtime.state().sampling.steps["gpu"].success is False
        assert runtime.rates.allocation.gpus == 1.0  # the GPU is still priced while NVML hangs
        assert pod_usd(runtime, clock.wall()) - before == pytest.approx(hourly / 3600, rel=1e-9)
    finally:
        fake_nvml.write("init 0")
        runtime.close()


def test_scripted_peer_is_reachable():
    """The fixture itself: a peer answers on loopback (guards the tests above against a dead fixture)."""
    counting = CountingServer()
    server = ScriptedPeer(counting)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            assert b"tgi_request_success 10" in client.recv(4096)
    finally:
        server.close()
