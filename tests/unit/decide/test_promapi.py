"""mlcost's transport: --query.timeout is one deadline for the whole request, however the peer sends."""

from __future__ import annotations

import socket
import time

from ml_cost_exporter.decide.main import main
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
