"""The quick start's demo stack: it comes up, reports, and stops every process it started."""

import re
import subprocess
import sys

import psutil

from tests.conftest import REPO, free_port


def test_the_demo_prints_urls_and_status_lines_and_leaves_nothing_running():
    ports = {name: free_port() for name in ("exporter", "server", "prometheus", "alertmanager", "sink")}
    args = [f"--{name}-port={port}" for name, port in ports.items()]
    result = subprocess.run([sys.executable, "-m", "demo.stack", *args, "--every", "2",
                             "--duration", "9"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for url in (f"http://127.0.0.1:{ports['exporter']}/metrics", f"http://127.0.0.1:{ports['prometheus']}/graph",
                f"http://127.0.0.1:{ports['alertmanager']}"):
        assert url in out
    status = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert status and all("alerts firing:" in line for line in status)
    assert any(re.search(r"chat \$\d+\.\d{4}/1k", line) for line in status)
    assert any(re.search(r"budget \$\d+\.\d{4} of \$0\.05 today", line) for line in status)
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert not listening & set(ports.values()), "the demo left processes listening"
