"""Steady-state CPU and memory of the sidecar at default settings, beside node_exporter.

Both run as processes on loopback and are scraped every 15 s, as Prometheus
would, for the measured window (60 s by default) after a warm-up. CPU is the
process's user+system time over the window as a share of one core; memory is
the resident set size at the end.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
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
        started = time.monotonic()
        next_scrape = started
        while (now := time.monotonic()) < started + args.seconds:
            if now >= next_scrape:
                for _, url in targets.values():
                    requests.get(url, timeout=5)
                next_scrape += args.scrape_interval
            time.sleep(min(0.5, max(0.0, started + args.seconds - now)))
        elapsed = time.monotonic() - started
        for name, handle in handles.items():
            cpu = sum(handle.cpu_times()[:2]) - start_cpu[name]
            rss = handle.memory_info().rss / 1e6
            print(f"footprint: {name:17s} CPU {cpu / elapsed * 100:.3f} % of one core over {elapsed:.0f} s, "
                  f"RSS {rss:.1f} MB")
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
