"""The exporter as a process, flags and all: a real volume read with statfs, egress from a sysfs tree it is
pointed at with --path.sysfs, priced exactly as computed by hand."""

from __future__ import annotations

import os

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GIB, wait_until
from tests.integration.conftest import start_exporter


def samples(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url, timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_pod_sending_known_bytes_with_a_known_volume_is_priced_by_hand(processes, tmp_path):
    volume = tmp_path / "models"
    volume.mkdir()
    stats = tmp_path / "sys" / "class" / "net" / "eth0" / "statistics"
    stats.mkdir(parents=True)
    (stats / "tx_bytes").write_text("1000\n")
    config = tmp_path / "pricing.yaml"
    config.write_text(f"""
pricing: {{provider: aws}}
allocation: {{vcpus: 2, memory_gib: 8}}
storage: {{volumes: [{{name: models, class: gp3, path: "{volume}"}}]}}
network: {{destination: internet}}
collection: {{interval_seconds: 0.2, cost_window_seconds: 60}}
""")
    url = start_exporter(processes, config, None, "--path.sysfs", str(tmp_path / "sys"), "--no-collector.gpu",
                         "--no-collector.server")
    wait_until(lambda: ("mlcost_network_transmit_bytes_total", ()) in samples(url), what="a first egress read")
    (stats / "tx_bytes").write_text(f"{1000 + 5 * GIB}\n")
    wait_until(lambda: samples(url)[("mlcost_network_transmit_bytes_total", ())] == 5 * GIB, what="5 GiB sent")
    got = samples(url)
    model = (("model", "default"), ("version", "latest"), ("workload", "inference"))
    network = got[("mlcost_usd_total", tuple(sorted((*model, ("resource", "network")))))]
    assert network == pytest.approx(5 * 0.09, rel=1e-9)  # 5 GiB at AWS's first internet tier
    stat = os.statvfs(volume)
    size = stat.f_blocks * stat.f_frsize
    assert got[("mlcost_volume_size_bytes", (("class", "gp3"), ("volume", "models")))] == size
    hourly = got[("mlcost_hourly_usd", tuple(sorted((*model, ("resource", "storage")))))]
    assert hourly == pytest.approx(size / GIB * 0.08 / 730, rel=1e-9)
