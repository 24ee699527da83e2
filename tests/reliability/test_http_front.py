"""Issue 9, cases 1 and 2: no client can stall the HTTP front or make it hold a thread per connection."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from ml_cost_exporter.exposition.front import Limits
from ml_cost_exporter.exposition.http import start_http_server
from ml_cost_exporter.exposition.webconfig import load_web_config
from tests.conftest import wait_until


class BlockingCollector:
    """A collector that holds its scrape until released, to fill the request slots on purpose."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def collect(self) -> Iterator:
        self.entered.release()
        self.release.wait(10)
        return iter(())


@pytest.fixture
def serve():
    servers = []

    def start(web_config=None, registry=None, **limits):
        if registry is None:
            registry = CollectorRegistry()
            Counter("mlcost_test", "A test counter.", registry=registry).inc()
        server, _ = start_http_server("127.0.0.1:0", registry, "/metrics", web_config, Limits(**limits))
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def connect(port: int, count: int, send: bytes = b"") -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        if send:
            client.sendall(send)
        clients.append(client)
    return clients


def close_all(clients: list[socket.socket]) -> None:
    for client in clients:
        client.close()


def test_silent_tcp_clients_do_not_block_tls_scrapes(serve, tls_web_config):
    """Case 1: with TLS on, clients that connect and send nothing leave every scrape working."""
    web, cert = tls_web_config
    port = serve(load_web_config(str(web)))
    silent = connect(port, 50)
    try:
        for _ in range(5):
            response = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(cert), timeout=2)
            assert response.status_code == 200 and "mlcost_test_total 1.0" in response.text
    finally:
        close_all(silent)


def test_half_open_requests_hold_no_thread_and_are_closed_at_the_header_deadline(serve):
    """Case 2: unfinished requests neither pile up threads nor stay open past the read-header timeout."""
    port = serve(read_header_timeout=0.5)
    threads_before = threading.active_count()
    half_open = connect(port, 200, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    try:
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
        assert threading.active_count() - threads_before <= 2  # one worker for the scrape, at most
        for client in half_open:
            client.settimeout(5)
            assert client.recv(1) == b"", "a half-open request outlived the read-header timeout"
    finally:
        close_all(half_open)


def test_tls_handshakes_that_stall_are_closed_at_the_deadline(serve, tls_web_config):
    web, cert = tls_web_config
    port = serve(load_web_config(str(web)), read_header_timeout=0.5)
    stalled = connect(port, 20, b"\x16\x03\x01\x00\xff")  # a ClientHello record header, then nothing
    try:
        for client in stalled:
            client.settimeout(5)
            assert client.recv(1) == b""
        assert requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(cert), timeout=2).status_code == 200
    finally:
        close_all(stalled)


def test_requests_beyond_max_requests_are_answered_503_at_once(serve):
    registry = CollectorRegistry()
    blocking = BlockingCollector()
    registry.register(blocking)
    port = serve(registry=registry, max_requests=2)
    url = f"http://127.0.0.1:{port}/metrics"
    held = [threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 10}) for _ in range(2)]
    for thread in held:
        thread.start()
    try:
        for _ in held:
            assert blocking.entered.acquire(timeout=5), "the held scrapes did not start"
        refused = requests.get(url, timeout=2)
        assert refused.status_code == 503 and "more than 2 concurrent requests" in refused.text
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 503
    finally:
        blocking.release.set()
        for thread in held:
            thread.join(5)
    wait_until(lambda: requests.get(url, timeout=2).status_code == 200, what="the slots to free up")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Endless: a" * 5000, 431),  # no end of headers, ever
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
    (b"PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
    (b"\x00\x01\x02 garbage\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
], ids=["big-header", "endless-headers", "body", "chunked-body", "put", "http2-line", "garbage", "many-headers"])
def test_oversized_and_malformed_requests_are_refused_with_a_status(serve, request_bytes, status):
    port = serve()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request_bytes)
        reply = client.recv(4096)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:80]


def test_connections_over_the_cap_evict_the_longest_waiting(serve):
    port = serve(max_connections=20)
    idle = connect(port, 60)
    try:
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
        closed = 0
        for client in idle[:40]:
            client.settimeout(5)
            closed += client.recv(1) == b""
        assert closed == 40
    finally:
        close_all(idle)


def test_keep_alive_serves_several_requests_on_one_connection(serve):
    port = serve()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(3):
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200 and b"mlcost_test_total" in response.read()
    connection.request("HEAD", "/metrics")
    head = connection.getresponse()
    assert head.status == 200 and head.read() == b"" and int(head.getheader("Content-Length")) > 0
    connection.close()


def test_plain_http_to_a_tls_port_is_dropped_without_harm(serve, tls_web_config):
    web, cert = tls_web_config
    port = serve(load_web_config(str(web)))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 OK")
