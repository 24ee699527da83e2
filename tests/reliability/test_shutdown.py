"""SIGTERM ends the exporter within seconds, with a final checkpoint, whatever its sources do.

Kubernetes kills a container 30 s after SIGTERM (the default grace period), and a killed exporter
loses its last checkpoint. Each class of stuck peer (a server, a gateway, both) holds a read open
for far longer than that while the signal arrives mid-tick.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import free_port, wait_until
from tests.reliability.conftest import read_request

GRACE_SECONDS = 10.0  # well under Kubernetes' 30 s


def stalled(conn: socket.socket) -> None:
    """Reads the request, then answers nothing until the test ends."""
    read_request(conn)
    time.sleep(120)


def config(tmp_path, server: str, gateway: str) -> str:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "allocation: {vcpus: 4, memory_gib: 16}\n"
        "collection: {interval_seconds: 120, server_timeout_seconds: 60, cost_window_seconds: 600}\n"
        f"models: [{{name: m, server: {{preset: vllm, url: '{server}'}}}}]\n"
        f"tenants: {{gateways: [{{preset: litellm, url: '{gateway}', models: {{m: m}}}}]}}\n")
    return str(path)


@pytest.mark.parametrize("stuck", ["server", "gateway", "both"])
def test_sigterm_mid_tick_stops_within_seconds_and_writes_the_checkpoint(tmp_path, peer, stuck):
    healthy = peer(lambda conn: (read_request(conn), conn.sendall(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")))
    slow = peer(stalled)
    server = (slow if stuck in ("server", "both") else healthy).url
    gateway = (slow if stuck in ("gateway", "both") else healthy).url
    port, storage = free_port(), tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_cost_exporter", "--config.file", config(tmp_path, server, gateway),
         "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(storage), "--no-collector.gpu",
         "--no-collector.process"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).status == 200,
                   what="the exporter to serve")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)  # the first tick is waiting on the stuck peer
        process.wait(timeout=GRACE_SECONDS + 20)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode()
    assert process.returncode == 0, output
    assert took < GRACE_SECONDS, f"SIGTERM took {took:.1f}s"
    checkpoint = next(storage.glob("*.json"))
    assert json.loads(checkpoint.read_text())  # the final checkpoint is there and whole
    assert "stopping: accruing up to now, writing the checkpoint" in output
