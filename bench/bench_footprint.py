"""Steady-state CPU and memory of the sidecar at default settings, beside node_exporter.

Both run as processes on loopback and are scraped every 15 s, as Prometheus
would, for the measured window (300 s by default) after a warm-up. CPU is read
in nanoseconds from each thread's /proc/PID/task/TID/schedstat (the scheduler's
own run time, where /proc/PID/stat counts 10 ms ticks: too coarse to tell 1.4x
from 2x at these loads); both exporters keep their threads for their life, so
the live threads hold all of it. The tick count is printed beside it as a check. Memory is the
resident set size at the end. The result is a ratio to node_exporter measured
in the same window on the same machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from harness.net import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def thread_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on CPU of each live thread, by thread id."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended
    return times


def cpu_seconds(before: dict, after: dict) -> float:
    """Seconds on CPU over the window (a thread started in the window counts from zero)."""
    return sum(ns - before.get(key, 0) for key, ns in after.items()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--with-server", action="store_true",
                        help="Configure a demo vLLM-style server under load instead of the zero-config defaults.")
    parser.add_argument("--storage", action="store_true",
                        help="Run with --storage.path (a checkpoint written every interval).")
    args = parser.parse_args()
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if node_exporter is None:
        raise SystemExit("node_exporter not found (Debian package prometheus-node-exporter)")
    ours_port, node_port = free_port(), free_port()
    extra, demo = [], None
    if args.with_server:
        server_port = free_port()
        demo = subprocess.Popen([sys.executable, "-m", "demo.server", "--listen-address",
                                 f"127.0.0.1:{server_port}", "--models", "chat,embed", "--load-rps", "50"],
                                stderr=subprocess.DEVNULL)
        config = Path(tempfile.mkdtemp()) / "pricing.yaml"
        config.write_text((REPO / "exporter" / "examples" / "demo.yaml").read_text()
                          .replace("127.0.0.1:18000", f"127.0.0.1:{server_port}")
                          .replace("interval_seconds: 5", "interval_seconds: 15"))
        extra = [f"--config.file={config}"]
    if args.storage:
        extra.append(f"--storage.path={tempfile.mkdtemp(prefix='mlcost-state-')}")
    ours = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter", f"--web.listen-address=127.0.0.1:{ours_port}",
                             *extra], stderr=subprocess.DEVNULL)
    node = subprocess.Popen([node_exporter, f"--web.listen-address=127.0.0.1:{node_port}"], stderr=subprocess.DEVNULL)
    targets = {"ml-cost-exporter": (ours, f"http://127.0.0.1:{ours_port}/metrics"),
               "node_exporter": (node, f"http://127.0.0.1:{node_port}/metrics")}
    try:
        for _, url in targets.values():
            wait_up(url)
        time.sleep(5)  # warm-up: imports done, first samples taken
        handles = {name: psutil.Process(p.pid) for name, (p, _) in targets.items()}
        start_cpu = {name: sum(h.cpu_times()[:2]) for name, h in handles.items()}
        start_ns = {name: thread_ns(h.pid) for name, h in handles.items()}
        started = time.monotonic()
        next_scrape = started
        while (now := time.monotonic()) < started + args.seconds:
            if now >= next_scrape:
                for _, url in targets.values():
                    requests.get(url, timeout=5)
                next_scrape += args.scrape_interval
            time.sleep(min(0.5, max(0.0, started + args.seconds - now)))
        elapsed = time.monotonic() - started
        share = {}
        for name, handle in handles.items():
            ticks = sum(handle.cpu_times()[:2]) - start_cpu[name]
            share[name] = cpu_seconds(start_ns[name], thread_ns(handle.pid)) / elapsed
            rss = handle.memory_info().rss / 1e6
            print(f"footprint: {name:17s} CPU {share[name] * 100:.4f} % of one core over {elapsed:.0f} s "
                  f"(ticks: {ticks / elapsed * 100:.3f} %), RSS {rss:.1f} MB")
        ratio = share["ml-cost-exporter"] / share["node_exporter"] if share["node_exporter"] else float("inf")
        print(f"footprint: ml-cost-exporter / node_exporter CPU = {ratio:.2f}x")
        setting = "a vLLM-style server under load configured" if args.with_server else "default settings"
        setting += ", --storage.path" if args.storage else ""
        print(f"footprint: ({setting}) goal for ml-cost-exporter <= 0.2 % of one core and <= 35 MB")
    finally:
        if demo is not None:
            demo.terminate()
        for process, _ in targets.values():
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
