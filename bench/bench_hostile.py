"""Hostile peers against the exporter's HTTP front and readers, each against a baseline in the same run.

--case clients: scrape latency, threads and RSS with hostile clients connected.
Both servers run in child processes serving the same registry: `front` (this
repository's FrontServer) and `stdlib` (ThreadingHTTPServer with the TLS socket
wrapped in the accept loop, as before issue 9). For each of: no hostile clients,
N silent TCP clients on a TLS port, M half-open plain-HTTP requests, it reports
p50/p99 scrape latency over the scrapes (a scrape that times out counts as its
timeout), and the server's threads and RSS.

The other cases compare this tree's package with the one at --baseline (a git
revision, extracted to a temporary directory), each run in its own child process:

--case exposition: peak RSS and parse p50/p99 of a 15 MB single-line /metrics body.
--case flood: legitimate scrapes succeeding while 60 clients send wrong passwords (bcrypt cost 12).
--case timing: median answer time for an unknown user and for a known user with a wrong password.
--case idle: the HTTP thread's CPU ticks and wake-ups (voluntary context switches) with no connection.

    .venv/bin/python -m bench.bench_hostile [--case all] [--baseline 6c4c181] [--silent 100] [--half-open 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


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
    import psutil
    import requests

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


def clients_case(args: argparse.Namespace) -> None:
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


# --- this tree against a baseline revision, each in a child process ------------------------------------------

REPO = Path(__file__).resolve().parents[1]
HUGE = 15_000_000


def _baseline_tree(revision: str) -> Path:
    """The package as it was at `revision`, extracted next to nothing else."""
    directory = Path(tempfile.mkdtemp(prefix="mlcost-bench-baseline-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "exporter/ml_cost_exporter"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory / "exporter"


def _child(tree: Path, *args: str, timeout: float = 300) -> dict:
    """Run this module's child side with `tree` first on the path; its last stdout line is JSON."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-m", "bench.bench_hostile", "--child", *args], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=timeout, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def child_exposition(rounds: int) -> dict:
    import resource

    from ml_cost_exporter.sources.expfmt import iter_samples, sample_pattern

    pattern = sample_pattern(["vllm:prompt_tokens_total", "vllm:generation_tokens_total"])
    body = "".join(("vllm:prompt_tokens_total{", "a" * HUGE, "\nvllm:generation_tokens_total 7\n"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        found = list(iter_samples(body, pattern))
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_before_mb": before, "peak_rss_mb": peak, "p50_ms": statistics.median(times) * 1000,
            "p99_ms": _percentile(times, 0.99) * 1000, "samples": len(found)}


def exposition_case(args: argparse.Namespace, baseline: Path) -> None:
    print("15 MB single-line body (a label block that never closes), then one valid sample")
    print(f"{'reader':9} {'rounds':>6} {'RSS before MB':>14} {'peak RSS MB':>12} {'p50 ms':>9} {'p99 ms':>9}")
    for name, tree, rounds in (("this", REPO / "exporter", 50), ("baseline", baseline, 3)):
        r = _child(tree, "exposition", str(rounds))
        print(f"{name:9} {rounds:6d} {r['rss_before_mb']:14.1f} {r['peak_rss_mb']:12.1f} {r['p50_ms']:9.1f} "
              f"{r['p99_ms']:9.1f}   samples found: {r['samples']}")


def child_serve(web: str) -> None:
    """Serve a small registry with the web config until stdin closes; print the port and the HTTP thread's id."""
    from prometheus_client import CollectorRegistry, Counter

    from ml_cost_exporter.exposition.http import start_http_server
    from ml_cost_exporter.exposition.webconfig import load_web_config

    registry = CollectorRegistry()
    Counter("mlcost_bench", "A bench counter.", registry=registry).inc()
    server, thread = start_http_server("127.0.0.1:0", registry, "/metrics", load_web_config(web) if web else None)
    print(json.dumps({"port": server.server_address[1], "tid": thread.native_id}), flush=True)
    sys.stdin.read()


class _Server:
    """A child process serving with one tree's package."""

    def __init__(self, tree: Path, web: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO}"}
        self.process = subprocess.Popen([sys.executable, "-m", "bench.bench_hostile", "--child", "serve", web],
                                        env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started = json.loads(self.process.stdout.readline())
        self.url, self.tid = f"http://127.0.0.1:{started['port']}/metrics", started["tid"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def _auth_web_config() -> str:
    import bcrypt

    web = Path(tempfile.mkdtemp(prefix="mlcost-bench-auth-")) / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'right', bcrypt.gensalt(12)).decode()}'\n")
    return str(web)


def _flood(url: str, clients: int, seconds: float, legit_every: float) -> tuple[list[int], list[int]]:
    """(legitimate statuses, attack statuses) while `clients` threads send wrong passwords."""
    import requests

    stop = threading.Event()

    def attacker(i: int) -> list[int]:
        statuses = []
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    statuses.append(session.get(url, auth=("prometheus", f"wrong-{i}-{len(statuses)}"),
                                                timeout=10).status_code)
                except requests.RequestException:
                    statuses.append(0)
        return statuses

    legit = []
    with ThreadPoolExecutor(clients) as pool:
        attacks = [pool.submit(attacker, i) for i in range(clients)]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                legit.append(requests.get(url, auth=("prometheus", "right"), timeout=10).status_code)
            except requests.RequestException:
                legit.append(0)
            time.sleep(legit_every)
        stop.set()
        return legit, [s for a in attacks for s in a.result()]


def flood_case(args: argparse.Namespace, baseline: Path) -> None:
    import requests

    web = _auth_web_config()
    print(f"{args.clients} clients with wrong passwords for {args.seconds:.0f} s, bcrypt cost 12; one legitimate "
          "scrape (already verified once) every 0.5 s")
    for name, tree in (("this", REPO / "exporter"), ("baseline", baseline)):
        server = _Server(tree, web)
        try:
            first = requests.get(server.url, auth=("prometheus", "right"), timeout=10).status_code
            legit, attacks = _flood(server.url, args.clients, args.seconds, 0.5)
        finally:
            server.close()
        answered = {code: attacks.count(code) for code in sorted(set(attacks))}
        print(f"{name:9} legitimate 200: {legit.count(200)}/{len(legit)} (first, before the flood: {first}); "
              f"attack answers: {answered}")


def timing_case(args: argparse.Namespace, baseline: Path) -> None:
    import requests

    web = _auth_web_config()
    print("median answer time, bcrypt cost 12, one request at a time (distinct passwords: no cache hits)")
    for name, tree in (("this", REPO / "exporter"), ("baseline", baseline)):
        server = _Server(tree, web)
        try:
            medians = {}
            for who in ("nobody", "prometheus"):
                times = []
                for i in range(args.timing_requests):
                    started = time.perf_counter()
                    requests.get(server.url, auth=(who, f"wrong-{i}"), timeout=30)
                    times.append(time.perf_counter() - started)
                medians[who] = statistics.median(times) * 1000
        finally:
            server.close()
        print(f"{name:9} unknown user {medians['nobody']:7.1f} ms   known user, wrong password "
              f"{medians['prometheus']:7.1f} ms")


def _thread_counters(pid: int, tid: int) -> tuple[int, int]:
    """(utime + stime ticks, voluntary context switches) of one thread."""
    task = Path(f"/proc/{pid}/task/{tid}")
    fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    switches = next(int(line.split()[1]) for line in task.joinpath("status").read_text().splitlines()
                    if line.startswith("voluntary_ctxt_switches"))
    return ticks, switches


def idle_case(args: argparse.Namespace, baseline: Path) -> None:
    import requests

    print(f"the HTTP thread over {args.idle_seconds:.0f} s with no connection open")
    for name, tree in (("this", REPO / "exporter"), ("baseline", baseline)):
        server = _Server(tree)
        try:
            requests.get(server.url, timeout=10)  # one scrape, then idle
            time.sleep(1.0)
            ticks0, wakes0 = _thread_counters(server.process.pid, server.tid)
            time.sleep(args.idle_seconds)
            ticks1, wakes1 = _thread_counters(server.process.pid, server.tid)
        finally:
            server.close()
        print(f"{name:9} CPU ticks {ticks1 - ticks0:4d} ({os.sysconf('SC_CLK_TCK')}/s)   wake-ups {wakes1 - wakes0:5d}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "exposition":
            print(json.dumps(child_exposition(int(sys.argv[3]))))
        elif sys.argv[2] == "serve":
            child_serve(sys.argv[3] if len(sys.argv) > 3 else "")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="all", choices=["all", "clients", "exposition", "flood", "timing", "idle"])
    parser.add_argument("--baseline", default="6c4c181", help="Git revision whose package is the baseline.")
    parser.add_argument("--silent", type=int, default=100)
    parser.add_argument("--half-open", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0, help="Seconds a scrape may take (counted if over).")
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--timing-requests", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    baseline = _baseline_tree(args.baseline) if args.case != "clients" else None
    cases = {"clients": clients_case, "exposition": exposition_case, "flood": flood_case, "timing": timing_case,
             "idle": idle_case}
    for name, case in cases.items():
        if args.case in ("all", name):
            if name == "clients":
                case(args)
            else:
                case(args, baseline)
            print()


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    main()
