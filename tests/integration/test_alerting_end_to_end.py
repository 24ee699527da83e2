"""A budget burns and the page arrives; the budget is raised by a config reload and the page resolves.

Real processes on loopback with random ports: the demo inference server, the exporter, Prometheus with the
project's rules and Alertmanager with the project's config. The shortened timings (scrape, evaluation and
alert resend every second, `for` of 1s, group waits of 1s) and the receivers' addresses are produced here
from the real files; nothing else in them changes.
"""

import json
import re
import shutil
import signal
import textwrap

import pytest

from harness.stackconfig import alertmanager_config
from tests.conftest import free_port, wait_until
from tests.support.binaries import start_demo_server, start_exporter, start_prometheus
from tests.support.http import LoopbackServer, Reply


class Webhook(LoopbackServer):
    """Records what Alertmanager posts, by path."""

    def __init__(self) -> None:
        super().__init__(lambda _: Reply(body=b"{}", content_type="application/json"), path="")

    def received(self, path: str) -> list[dict]:
        return [json.loads(request.body or b"{}") for request in super().received(path)]


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def exporter_config(server_url: str, budget: float) -> str:
    return textwrap.dedent(f"""
        allocation: {{gpu: {{type: l4, count: 1}}, vcpus: 4, memory_gib: 16}}
        models:
          - {{name: chat, version: v1, server: {{preset: vllm, url: "{server_url}"}}}}
        budgets:
          - {{name: tiny, amount_usd: {budget}, period: day}}
        collection: {{interval_seconds: 0.5, cost_window_seconds: 10}}
    """)


# Amounts under a dollar keep significant digits: never "$0.00" for a budget of a hundredth of a cent.
SMALL = r"\$0\.(?:0*[1-9]\d(?:\d*)?)"
PAGE = re.compile(rf"^tiny is spending {SMALL} an hour, \d+\.\dx the {SMALL} an hour its \$0\.00010000 budget affords; "
                  rf"{SMALL} is spent so far this period\.$")


def test_a_burning_budget_pages_with_its_dollars_and_resolves_when_the_budget_is_raised(
        processes, tmp_path, webhook):
    for binary in ("prometheus", "prometheus-alertmanager"):
        assert shutil.which(binary), f"{binary} is required (Debian packages prometheus, prometheus-alertmanager)"
    server_url = start_demo_server(processes, models="chat", rps=20)
    config = tmp_path / "pricing.yaml"
    config.write_text(exporter_config(server_url, 0.0001))
    exporter_url = start_exporter(processes, config, {}, "--no-collector.gpu")
    exporter = processes._started[-1]

    am_port = free_port()
    processes.start("alertmanager", [
        "prometheus-alertmanager", f"--config.file={alertmanager_config(tmp_path, webhook.url, group_wait='1s')}",
        f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address="])
    start_prometheus(processes, tmp_path, exporter_url, f"127.0.0.1:{am_port}")

    def burn_fast_pages():
        return [event for event in webhook.received("/pagerduty") if event.get("event_action") == "trigger"
                and event["payload"]["summary"].startswith("tiny is spending")]

    pages = wait_until(burn_fast_pages, timeout=90, what="the MLCostBudgetBurnFast page")
    page = pages[0]
    assert PAGE.match(page["payload"]["summary"]), page["payload"]["summary"]
    assert page["routing_key"] == "local-routing-key"  # read from the secret file, never from the config
    assert page["payload"]["severity"] == "critical"
    assert "docs/runbooks.md#mlcostbudgetburnfast" in page["payload"]["custom_details"]["runbook"]
    wait_until(lambda: webhook.received("/watchdog"), timeout=30, what="the Watchdog heartbeat")

    config.write_text(exporter_config(server_url, 1_000_000_000))
    exporter.send_signal(signal.SIGHUP)

    def resolved():
        return [event for event in webhook.received("/pagerduty")
                if event.get("event_action") == "resolve" and event.get("dedup_key") == page["dedup_key"]]

    resolution = wait_until(resolved, timeout=90, what="the resolved notification")[0]
    assert resolution["payload"]["summary"] == "Resolved: MLCostBudgetBurnFast - budget tiny"
    warnings = webhook.received("/slack")
    assert all("MLCostBudgetBurnSlow" not in json.dumps(w) for w in warnings)  # inhibited by the critical page
