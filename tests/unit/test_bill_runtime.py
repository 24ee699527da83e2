"""Storage through the runtime's life: a volume that stops reading, a restart with a checkpoint."""

import os

import pytest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, HostPaths, Runtime
from tests.conftest import GIB

CONFIG = """
pricing: {provider: gcp}
allocation: {vcpus: 2, memory_gib: 8}
storage:
  volumes:
    - {name: data, class: pd-ssd, path: /data}
    - {name: logs, class: pd-standard, path: /logs}
collection: {interval_seconds: 60}
"""
HOURLY_DATA = 200 * 0.17 / 730  # 200 GiB pd-ssd


class FakeStatfs:
    """200 GiB at /data; /logs fails (never read) unless the test lets it through."""

    def __init__(self) -> None:
        self.broken = {"/logs"}

    def __call__(self, path: str) -> os.statvfs_result:
        if any(path.endswith(p) for p in self.broken):
            raise OSError(5, "Input/output error")
        return os.statvfs_result((4096, 4096, 200 * GIB // 4096, 0, 0, 0, 0, 0, 0, 255))


def make(tmp_path, clock, statfs, storage_path=None) -> Runtime:
    (tmp_path / "pricing.yaml").write_text(CONFIG)
    (tmp_path / "cpu.max").write_text("max 100000")
    return Runtime(str(tmp_path / "pricing.yaml"), frozenset({"storage"}), Clocks(clock.wall, clock.monotonic),
                   environ={}, cgroup_root=tmp_path, storage_path=storage_path,
                   host=HostPaths(sysfs=tmp_path / "sys", procfs=tmp_path / "proc", root=tmp_path, statfs=statfs))


def storage_usd(rt: Runtime) -> float:
    return build_registry(rt.state).get_sample_value(
        "mlcost_usd_total", {"model": "default", "version": "latest", "workload": "inference", "resource": "storage"})


def test_an_unreadable_volume_is_unpriced_and_one_that_stops_reading_keeps_its_last_size(tmp_path, clock):
    statfs = FakeStatfs()
    rt = make(tmp_path, clock, statfs)
    try:
        for _ in range(3):
            rt.tick()
            clock.advance(60)
        statfs.broken.add("/data")  # the data volume's filesystem hangs up: it keeps accruing at 200 GiB
        rt.tick()
        value = build_registry(rt.state).get_sample_value
        assert storage_usd(rt) == pytest.approx(HOURLY_DATA * 180 / 3600, rel=1e-9)
        assert value("mlcost_exporter_unpriced_total", {"source": "volume:logs", "reason": "size_unreadable"}) == 4
        assert value("mlcost_exporter_unpriced_total", {"source": "volume:data", "reason": "size_unreadable"}) == 1
        assert value("mlcost_exporter_collector_success", {"collector": "storage"}) == 0.0
        assert value("mlcost_volume_size_bytes", {"volume": "logs", "class": "pd-standard"}) is None
    finally:
        rt.close()


def test_a_restart_accrues_the_gap_at_the_last_sizes(tmp_path, clock):
    state = str(tmp_path / "state")
    rt = make(tmp_path, clock, FakeStatfs(), state)
    rt.tick()
    clock.advance(60)
    rt.tick()
    rt.close()  # accrued to now, checkpoint written
    clock.advance(120)  # down two minutes
    again = make(tmp_path, clock, FakeStatfs(), state)
    try:
        assert storage_usd(again) == pytest.approx(HOURLY_DATA * 180 / 3600, rel=1e-9)
    finally:
        again.close()


def test_priced_parts_no_source_measures_are_reported_not_priced_at_zero_silently(tmp_path, clock):
    (tmp_path / "pricing.yaml").write_text(CONFIG + "network: {destination: cross_zone}\n")
    rt = Runtime(str(tmp_path / "pricing.yaml"), frozenset(), Clocks(clock.wall, clock.monotonic), environ={},
                 cgroup_root=tmp_path, host=HostPaths(sysfs=tmp_path / "sys", procfs=tmp_path / "proc",
                                                      root=tmp_path, statfs=FakeStatfs()))
    try:
        rt.tick()  # --no-collector.storage and --no-collector.network, with volumes and egress configured
        value = build_registry(rt.state).get_sample_value
        for source in ("volume:data", "volume:logs", "network"):
            assert value("mlcost_exporter_unpriced_total", {"source": source, "reason": "not_measured"}) == 1
    finally:
        rt.close()
