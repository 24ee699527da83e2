"""Soak: the exporter at a 1 s interval against a server whose label values churn; RSS and open fds stay flat.

CI runs 20 s (MLCOST_SOAK_SECONDS=600 runs ten minutes). Every tick the server
shows new `model_name` values and drops old ones, and Prometheus-style scrapes
arrive throughout, so a leak per series, per fetch or per connection shows.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time

import psutil
import requests

from tests.conftest import free_port, wait_until
from tests.reliability.conftest import ScriptedPeer

SECONDS = float(os.environ.get("MLCOST_SOAK_SECONDS", "20"))
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def churning_server() -> ScriptedPeer:
    counter = itertools.count()
    lock = threading.Lock()

    def reply(conn: socket.socket) -> None:
        with lock:
            n = next(counter)
        lines = [f'vllm:request_success_total{{model_name="{MODEL}",finished_reason="stop"}} {n * 5}']
        lines += [f'vllm:request_success_total{{model_name="churn-{n}-{i}",finished_reason="stop"}} {i}'
                  for i in range(200)]
        body = ("\n".join(lines) + "\n").encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    return ScriptedPeer(reply)


def test_rss_and_open_fds_stay_flat_over_a_soak(tmp_path):
    server = churning_server()
    config = tmp_path / "pricing.yaml"
    config.write_text("allocation: {vcpus: 2, memory_gib: 4}\n"
                      "collection: {interval_seconds: 1, server_timeout_seconds: 0.5, cost_window_seconds: 60}\n"
                      f"models: [{{name: llama, server: {{preset: vllm, url: '{server.url}', model: '{MODEL}'}}}}]\n")
    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter", "--config.file", str(config),
                                 "--no-collector.gpu", "--web.listen-address", f"127.0.0.1:{port}"],
                                stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: requests.get(url, timeout=1).ok, what="the exporter")
        process = psutil.Process(exporter.pid)
        samples = []
        end = time.monotonic() + SECONDS
        with requests.Session() as session:
            while time.monotonic() < end:
                assert session.get(url, timeout=2).status_code == 200
                requests.get(url, timeout=2)  # and a fresh connection each time
                samples.append((process.memory_info().rss, process.num_fds(), process.num_threads()))
                time.sleep(0.25)  # the scrape cadence of this test, not synchronisation
        text = requests.get(url, timeout=2).text
    finally:
        exporter.terminate()
        exporter.wait(10)
        server.close()
    warm = samples[len(samples) // 3:]  # after imports, caches and the first fetches have settled
    first, last = warm[0], warm[-1]
    assert max(s[0] for s in warm) - first[0] < 4 * 1024 * 1024, f"RSS grew: {first[0]} -> {last[0]}"
    assert max(s[1] for s in warm) <= first[1] + 4, f"open fds grew: {first[1]} -> {last[1]}"
    assert max(s[2] for s in warm) <= first[2] + 4, f"threads grew: {first[2]} -> {last[2]}"
    assert 'mlcost_requests_total{model="llama",version="latest"}' in text
    assert "churn-" not in text
