"""The quick start's demo stack: it comes up, reports, lists the pages it received, and on Ctrl-C stops every
process it started, saying which."""

import json
import re
import signal
import subprocess
import sys
import threading

import psutil
import pytest
import requests

from demo.webhook_sink import start_sink
from tests.conftest import REPO, free_port, wait_until

STATUS = re.compile(r"\d\d:\d\d:\d\d ")


@pytest.mark.prometheus  # the demo runs Prometheus and Alertmanager when they are installed; the test needs them
def test_the_demo_prints_urls_and_status_lines_and_stops_everything_on_ctrl_c():
    ports = {name: free_port() for name in ("exporter", "server", "prometheus", "alertmanager", "sink")}
    args = [f"--{name}-port={port}" for name, port in ports.items()]
    demo = subprocess.Popen([sys.executable, "-m", "demo", *args, "--every", "2"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(STATUS.match(line) and "chat $" in line for line in lines), timeout=90,
                   what="a status line with the cost per 1k")
        sink = requests.get(f"http://127.0.0.1:{ports['sink']}/", timeout=5)
        assert sink.status_code == 200 and sink.text.startswith("no notifications yet")
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    reader.join(5)
    out = "".join(lines)
    for url in (f"http://127.0.0.1:{ports['exporter']}/metrics", f"http://127.0.0.1:{ports['prometheus']}/graph",
                f"http://127.0.0.1:{ports['alertmanager']}"):
        assert url in out
    words = " ".join(out.split())
    assert "A page (lines starting >> PAGE) quotes Prometheus' 1-hour burn rate" in words
    assert "Alertmanager holds back the same budget's warnings (its inhibit rules)" in words
    status = [line for line in lines if STATUS.match(line)]
    assert all("alerts firing:" in line for line in status)
    assert "warming up" in status[0] and re.search(r"\d+\.\d req/s", status[1])
    assert any(re.search(r"chat \$\d+\.\d{4}/1k", line) for line in status)
    assert any(re.search(r"budget \$\d+\.\d{4} of \$0\.05 today \(burn now \d+x\)", line) for line in status)
    stopping = next(line for line in lines if line.startswith("stopping "))
    for name in ("prometheus", "alertmanager", "exporter", "demo-server"):
        assert f"{name} (pid " in stopping
    assert f"stopping the webhook sink on 127.0.0.1:{ports['sink']}" in out
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert not listening & set(ports.values()), "the demo left processes listening"


def test_the_webhook_sink_lists_the_pages_it_received_on_get():
    printed: list[str] = []
    sink = start_sink(("127.0.0.1", 0), emit=printed.append)
    base = f"http://127.0.0.1:{sink.server_address[1]}"
    try:
        page = {"event_action": "trigger", "payload": {"summary": "Budget demo-daily is burning 17.6x"}}
        chat = {"channel": "#ml-cost", "attachments": [{"title": "[FIRING:1] MLCostBudgetThresholdReached",
                                                        "text": "80 % spent"}]}
        for path, body in (("/pagerduty", page), ("/slack", chat), ("/watchdog", {"status": "firing"})):
            assert requests.post(base + path, data=json.dumps(body), timeout=5).status_code == 200
        listed = requests.get(base + "/", timeout=5)
    finally:
        sink.shutdown()
        sink.server_close()
    expected = ["PAGE: Budget demo-daily is burning 17.6x",
                "CHAT #ml-cost: [FIRING:1] MLCostBudgetThresholdReached 80 % spent"]
    assert printed == expected
    assert listed.status_code == 200 and listed.text == "".join(f"{line}\n" for line in expected)
