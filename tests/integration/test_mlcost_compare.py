"""`mlcost compare` against real Prometheus holding a backfilled history, checked against a hand computation.

Three days (2026-05-01 to 05-04 UTC, 5-minute samples) of two pods serving `chat`, each $5/h (GPU $4.50,
CPU $0.50), each 250 prompt tokens/s (50 of them from the prefix cache) and 750 generated tokens/s, GPUs
60 % busy; and a pod serving `embed` whose GPU is 10 % busy (it must not count for chat). The window is
the last two days.

By hand, per day: chat costs 2 x $5 x 24 = $240 and serves 43.2M prompt tokens (8.64M cached) and 129.6M
generated, 172.8M in all: $240 / 172.8 = $1.3889 per 1M. At full utilization the pods serve
172.8M / 0.6 = 288M tokens/day.
  gpt-4o-mini: 34.56M x $0.15 + 8.64M x $0.075 + 129.6M x $0.60 = $83.592/day = $0.48375 per 1M;
               crossover $240 / $0.48375 per 1M = 496.12M tokens/day, beyond 288M: never cheaper to self-host.
  gpt-4o:      34.56M x $2.50 + 8.64M x $1.25 + 129.6M x $10 = $1,393.20/day = $8.0625 per 1M;
               crossover 29.767M tokens/day, within capacity: self-hosting is cheaper now.
  gemini-2.5-flash-lite (no cached price): 43.2M x $0.10 + 129.6M x $0.40 = $56.16/day.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from ml_cost_exporter.decide.main import main
from tests.conftest import free_port, wait_until
from tests.integration.conftest import Processes

START = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
END = datetime(2026, 5, 4, tzinfo=UTC).timestamp()
STEP = 300.0
PODS = (("chat-0", "chat", 0.6), ("chat-1", "chat", 0.6), ("embed-0", "embed", 0.1))


def openmetrics() -> str:
    """The history as one OpenMetrics document, each family's samples together."""
    families: dict[str, tuple[str, list[str]]] = {}

    def add(family: str, kind: str, sample: str, labels: dict[str, str], value: float, t: float) -> None:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        families.setdefault(family, (kind, []))[1].append(f"{sample}{{{text}}} {value!r} {t:.0f}")

    steps = int((END - START) // STEP) + 1
    for instance, model, busy in PODS:
        pod = {"instance": instance, "job": "ml-cost-exporter"}
        base = {**pod, "model": model, "version": "v1"}
        for i in range(steps):
            t, elapsed = START + i * STEP, i * STEP
            for resource, rate in (("gpu", 4.5), ("cpu", 0.5)):
                add("mlcost_usd", "counter", "mlcost_usd_total", {**base, "workload": "inference",
                                                                  "resource": resource}, rate * elapsed / 3600, t)
            for kind, per_second in (("prompt", 250), ("generation", 750)):
                add("mlcost_tokens", "counter", "mlcost_tokens_total", {**base, "kind": kind},
                    float(per_second * elapsed), t)
            add("mlcost_prompt_cached_tokens", "counter", "mlcost_prompt_cached_tokens_total", base,
                float(50 * elapsed), t)
            add("mlcost_model_info", "gauge", "mlcost_model_info", {**base, "workload": "inference"}, 1.0, t)
            add("mlcost_gpu_utilization_ratio", "gauge", "mlcost_gpu_utilization_ratio",
                {**pod, "gpu": "0", "uuid": f"GPU-{instance}"}, busy, t)
    lines = []
    for family, (kind, samples) in families.items():
        lines += [f"# TYPE {family} {kind}", *samples]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("compare")
    source = root / "history.om"
    source.write_text(openmetrics())
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source),
                    str(root / "data")], check=True, capture_output=True)
    (root / "prometheus.yml").write_text("global: {}\n")
    processes = Processes(root)
    port = free_port()
    processes.start("prometheus", ["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={root / 'data'}", "--storage.tsdb.retention.time=50y",
                                   f"--web.listen-address=127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 60, what="Prometheus")
        yield url
    finally:
        processes.stop_all()


def compare(url: str, capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["compare", "--until", "2026-05-04", "--since", "2d", *argv], {"MLCOST_PROMETHEUS_URL": url})
    out, err = capsys.readouterr()
    return status, out, err


def test_compare_matches_the_hand_computation(prometheus, capsys):
    status, out, err = compare(prometheus, capsys, "--model", "chat", "--format", "json",
                               "--hosted", "gpt-4o-mini,gpt-4o,gemini-2.5-flash-lite")
    assert status == 0, err
    document = json.loads(out)
    measured = document["meta"]["self_hosted"]
    assert measured["usd_per_day"] == pytest.approx(240.0, rel=1e-6)
    assert measured["tokens_per_day"] == pytest.approx(172.8e6, rel=1e-6)
    assert measured["usd_per_1m"] == pytest.approx(240 / 172.8, rel=1e-6)
    assert measured["gpu_utilization"] == pytest.approx(0.6, rel=1e-9)  # embed's 10 % pod is not chat's
    assert measured["capacity_tokens_per_day"] == pytest.approx(288e6, rel=1e-6)
    rows = {row["hosted"]: row for row in document["hosted"]}
    mini, big, lite = rows["gpt-4o-mini"], rows["gpt-4o"], rows["gemini-2.5-flash-lite"]
    assert mini["api_usd_per_day"] == pytest.approx(83.592, rel=1e-6)
    assert mini["api_usd_per_1m"] == pytest.approx(0.48375, rel=1e-6)
    assert mini["crossover_tokens_per_day"] == pytest.approx(240 / 0.48375 * 1e6, rel=1e-6)
    assert mini["within_capacity"] is False and mini["cheaper_now"] == "api"
    assert big["api_usd_per_day"] == pytest.approx(1393.2, rel=1e-6)
    assert big["crossover_tokens_per_day"] == pytest.approx(240 / 8.0625 * 1e6, rel=1e-6)
    assert big["within_capacity"] is True and big["cheaper_now"] == "self-hosted"
    assert lite["api_usd_per_day"] == pytest.approx(56.16, rel=1e-6)


def test_the_table_states_the_crossover_in_80_columns(prometheus, capsys):
    status, out, _ = compare(prometheus, capsys, "--model", "chat", "--hosted", "gpt-4o-mini,gpt-4o")
    assert status == 0
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "gpt-4o-mini" in out and "496.1M (never)" in out and "29.8M" in out


def test_a_hosted_model_without_a_price_is_one_line_and_status_2(prometheus, capsys):
    status, out, err = compare(prometheus, capsys, "--model", "chat", "--hosted", "gpt-9")
    assert status == 2 and out == ""
    assert err.strip().startswith('mlcost: --hosted: no price for "gpt-9" in the catalog (known: ')
    assert len(err.strip().splitlines()) == 1


def test_a_model_without_tokens_is_one_line_and_status_2(prometheus, capsys):
    status, _, err = compare(prometheus, capsys, "--model", "nope")
    assert status == 2 and 'no tokens recorded for model "nope"' in err
