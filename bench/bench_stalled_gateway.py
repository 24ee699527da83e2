"""A stalled gateway beside a healthy server: server reads completed in 25 ticks, and the time SIGTERM takes.

The gateway accepts and never answers; the server answers at once. Run on this tree, and with
PYTHONPATH pointing at another checkout's package (an older commit) for the before figure.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from harness.net import free_port


class Peer:
    """A loopback HTTP peer: `stall` accepts and answers nothing; otherwise a counter that rises each read."""

    def __init__(self, stall: bool) -> None:
        self.reads = 0
        self._stall = stall
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/metrics"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.recv(65536)
        if self._stall:
            time.sleep(3600)
            return
        self.reads += 1
        body = f'vllm:request_success_total{{finished_reason="stop",model_name="m"}} {self.reads * 10}\n'.encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=10.0, help="collection.server_timeout_seconds")
    args = parser.parse_args()
    server, gateway = Peer(stall=False), Peer(stall=True)
    directory = Path(tempfile.mkdtemp(prefix="mlcost-stall-"))
    config = directory / "pricing.yaml"
    config.write_text(
        "allocation: {vcpus: 4, memory_gib: 16}\n"
        f"collection: {{interval_seconds: 1, server_timeout_seconds: {args.timeout}, cost_window_seconds: 60}}\n"
        f"models: [{{name: m, server: {{preset: vllm, url: '{server.url}'}}}}]\n"
        f"tenants: {{gateways: [{{preset: litellm, url: '{gateway.url}', models: {{m: m}}}}]}}\n")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter", f"--config.file={config}",
                                f"--web.listen-address=127.0.0.1:{port}", f"--storage.path={directory / 'state'}",
                                "--no-collector.gpu", "--no-collector.process"],
                               stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(args.ticks)  # 25 ticks of 1 s: a healthy server should be read at each
    reads = server.reads
    stopping = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
        took = f"{time.monotonic() - stopping:.1f} s"
    except subprocess.TimeoutExpired:
        process.kill()
        took = "over 120 s (killed)"
    print(f"stalled gateway: {reads} server reads over {args.ticks} one-second ticks; SIGTERM took {took}; "
          f"checkpoint written: {(directory / 'state' / 'mlcost-checkpoint.json').exists()}")


if __name__ == "__main__":
    main()
