"""mlcost's transport: --query.timeout is one deadline for the whole request, however the peer sends."""

from __future__ import annotations

import socket
import time

import pytest

from ml_cost_exporter.decide.errors import PeerError
from ml_cost_exporter.decide.main import main
from ml_cost_exporter.decide.promapi import Connection, Prometheus
from tests.loopback import LoopbackHttp, ok
from tests.reliability.conftest import ScriptedPeer


def drip_json(conn: socket.socket) -> None:
    """Headers, then one byte a second: every read is quick, the body never ends."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(60):
        conn.sendall(b" ")
        time.sleep(1.0)


def test_a_prometheus_dripping_a_byte_a_second_is_given_up_at_the_deadline_with_status_3(capsys):
    peer = ScriptedPeer(drip_json)
    url = peer.url.removesuffix("/metrics")
    started = time.monotonic()
    try:
        status = main(["report", "--prometheus.url", url, "--query.timeout", "2s"], {})
    finally:
        peer.close()
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert (status, out) == (3, "")
    assert err == f"mlcost: Prometheus at {url} did not answer within the deadline of 2s\n"
    assert elapsed < 2 + 3, f"the query took {elapsed:.1f}s"


def test_queries_share_one_kept_alive_connection_and_a_refused_query_names_prometheus_error():
    answer = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'
    server = LoopbackHttp({"/api/v1/query": ok(answer)})
    try:
        prometheus = Prometheus(Connection("Prometheus", server.base, bearer_token="t0ken", timeout_seconds=2))
        assert prometheus.instant("up", 0) == [] and prometheus.instant("up", 60) == []
        assert server.connections == 1 and server.requests[0].headers["Authorization"] == "Bearer t0ken"
        server.routes["/api/v1/query"] = lambda seen: (400, {}, b'{"status": "error", "error": "parse error"}')
        with pytest.raises(PeerError) as failure:
            prometheus.instant("up{", 0)
        assert str(failure.value) == f"Prometheus at {server.base} answered HTTP 400: parse error"
    finally:
        server.close()
