"""Scrape latency, threads and RSS with hostile clients connected, against the previous server as baseline.

Both servers run in child processes serving the same registry: `front` (this
repository's FrontServer) and `stdlib` (ThreadingHTTPServer with the TLS socket
wrapped in the accept loop, as before issue 9). For each of: no hostile clients,
N silent TCP clients on a TLS port, M half-open plain-HTTP requests, it reports
p50/p99 scrape latency over the scrapes (a scrape that times out counts as its
timeout), and the server's threads and RSS.

    .venv/bin/python -m bench.bench_hostile [--silent 100] [--half-open 500] [--scrapes 100]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import requests


def _serve(kind: str, port: int, web: str | None, ready) -> None:
    from prometheus_client import CollectorRegistry, Counter

    from ml_cost_exporter.exposition.webconfig import load_web_config

    registry = CollectorRegistry()
    for i in range(50):
        Counter(f"mlcost_bench_{i}", "A bench counter.", ["model"], registry=registry).labels("m").inc()
    config = load_web_config(web) if web else None
    if kind == "front":
        from ml_cost_exporter.exposition.http import start_http_server

        start_http_server(f"127.0.0.1:{port}", registry, "/metrics", config)
    else:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from prometheus_client.exposition import generate_latest

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        context = config.ssl_context() if config else None
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready.set()
    time.sleep(3600)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificate() -> tuple[str, str]:
    directory = Path(tempfile.mkdtemp(prefix="mlcost-bench-tls-"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    web = directory / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    return str(web), str(cert)


def _measure(kind: str, web: str | None, cert: str | None, hostile: int, payload: bytes,
             scrapes: int, timeout: float) -> tuple[float, float, int, float]:
    port, ready = _port(), multiprocessing.Event()
    child = multiprocessing.Process(target=_serve, args=(kind, port, web, ready), daemon=True)
    child.start()
    ready.wait(30)
    clients = []
    try:
        for _ in range(hostile):
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=0.2)
            except OSError:
                continue  # the backlog is full: the server stopped accepting (the baseline's failure)
            if payload:
                client.sendall(payload)
            clients.append(client)
        url = f"{'https' if web else 'http'}://127.0.0.1:{port}/metrics"
        latencies = []
        with requests.Session() as session:
            for _ in range(scrapes):
                started = time.perf_counter()
                try:
                    session.get(url, timeout=timeout, verify=cert or True)
                    latencies.append(time.perf_counter() - started)
                except requests.RequestException:
                    latencies.append(timeout)
        process = psutil.Process(child.pid)
        threads, rss = process.num_threads(), process.memory_info().rss / 1e6
    finally:
        for client in clients:
            client.close()
        child.kill()
        child.join()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000, threads, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--silent", type=int, default=100)
    parser.add_argument("--half-open", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0, help="Seconds a scrape may take (counted if over).")
    args = parser.parse_args()
    web, cert = _certificate()
    cases = [("TLS, no hostile clients", web, cert, 0, b""),
             (f"TLS, {args.silent} silent TCP clients", web, cert, args.silent, b""),
             ("plain, no hostile clients", None, None, 0, b""),
             (f"plain, {args.half_open} half-open requests", None, None, args.half_open,
              b"GET /metrics HTTP/1.1\r\nHost: x\r\n")]
    print(f"{'case':40} {'server':7} {'p50 ms':>8} {'p99 ms':>8} {'threads':>8} {'RSS MB':>7}")
    for name, web_file, cert_file, hostile, payload in cases:
        for kind in ("front", "stdlib"):
            scrapes = args.scrapes if kind == "front" or not hostile or web_file is None else 3
            p50, p99, threads, rss = _measure(kind, web_file, cert_file, hostile, payload, scrapes, args.timeout)
            print(f"{name:40} {kind:7} {p50:8.1f} {p99:8.1f} {threads:8d} {rss:7.1f}")


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    main()
