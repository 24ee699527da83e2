"""The pod's egress counters and volume sizes: pure parsing on literal text, deltas and every failure named."""

import logging
import os

import pytest

from ml_cost_exporter.config.bill import Volume
from ml_cost_exporter.sources.network import EgressSource, parse_proc_net_dev
from ml_cost_exporter.sources.volumes import VolumeSource

PROC_NET_DEV = """\
Inter-|   Receive                                            |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo: 9000000 100 0 0 0 0 0 0 9000000 100 0 0 0 0 0 0
  eth0: 1234567 2000 0 0 0 0 0 0 7654321 1500 0 0 0 0 0 0
garbage line without numbers
  eth1:  100 1 0 0 0 0 0 0 notanumber 1 0 0 0 0 0 0
"""


class Tree:
    """A fake sysfs class/net tree the test writes, and a monotonic clock it moves."""

    def __init__(self, root):
        self.root = root
        self.now = 0.0

    def write(self, **counters: int | str) -> None:
        for name, value in counters.items():
            stats = self.root / "class" / "net" / name / "statistics"
            stats.mkdir(parents=True, exist_ok=True)
            (stats / "tx_bytes").write_text(f"{value}\n")

    def remove(self, name: str) -> None:
        (self.root / "class" / "net" / name / "statistics" / "tx_bytes").unlink()
        (self.root / "class" / "net" / name / "statistics").rmdir()
        (self.root / "class" / "net" / name).rmdir()


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path / "sys")


@pytest.fixture
def source(tree, tmp_path):
    return EgressSource(tree.root, tmp_path / "proc", monotonic=lambda: tree.now)


def test_proc_net_dev_gives_transmit_bytes_by_interface():
    assert parse_proc_net_dev(PROC_NET_DEV) == {"lo": 9000000, "eth0": 7654321}


def test_the_first_read_is_a_baseline_and_later_reads_sum_every_interface_but_loopback(tree, source):
    tree.write(eth0=1000, eth1=50, lo=10**9)
    assert source.sample().bytes_sent == 0.0
    tree.now += 15
    tree.write(eth0=4000, eth1=150, lo=5 * 10**9)
    reading = source.sample()
    assert reading.bytes_sent == 3100.0 and reading.failures == () and reading.interfaces == ("eth0", "eth1")


def test_a_counter_reset_counts_the_new_value_and_is_reported(tree, source, caplog):
    tree.write(eth0=10_000)
    source.sample()
    tree.now += 15
    tree.write(eth0=700)
    with caplog.at_level(logging.WARNING):
        reading = source.sample()
    assert reading.bytes_sent == 700.0
    assert reading.failures == (("eth0", "counter_reset"),)
    assert "interface eth0: counter reset" in caplog.text


def test_an_interface_that_disappears_is_reported_once_and_the_others_still_count(tree, source):
    tree.write(eth0=100, eth1=100)
    source.sample()
    tree.now += 15
    tree.remove("eth1")
    tree.write(eth0=600)
    reading = source.sample()
    assert reading.bytes_sent == 500.0 and reading.failures == (("eth1", "interface_gone"),)
    tree.now += 15
    tree.write(eth0=700)
    assert source.sample().failures == ()


def test_an_unreadable_counter_is_reported_and_compared_again_next_time(tree, source):
    tree.write(eth0=100)
    source.sample()
    tree.now += 15
    tree.write(eth0="garbage")
    reading = source.sample()
    assert reading.bytes_sent == 0.0 and reading.failures == (("eth0", "unreadable"),)
    tree.now += 15
    tree.write(eth0=400)
    assert source.sample().bytes_sent == 300.0  # counted against the last good value


def test_a_jump_faster_than_any_nic_is_refused(tree, source):
    tree.write(eth0=0)
    source.sample()
    tree.now += 1
    tree.write(eth0=10**15)
    reading = source.sample()
    assert reading.bytes_sent == 0.0 and reading.failures == (("eth0", "implausible"),)


def test_without_sysfs_the_counters_come_from_proc_net_dev(tmp_path):
    (tmp_path / "proc" / "net").mkdir(parents=True)
    dev = tmp_path / "proc" / "net" / "dev"
    dev.write_text(PROC_NET_DEV)
    clock = iter([0.0, 15.0])
    source = EgressSource(tmp_path / "nosys", tmp_path / "proc", monotonic=lambda: next(clock))
    source.sample()
    dev.write_text(PROC_NET_DEV.replace("7654321", "7664321"))
    assert source.sample().bytes_sent == 10000.0


def test_no_counters_at_all_is_one_error_not_zero_bytes(tmp_path):
    reading = EgressSource(tmp_path / "nosys", tmp_path / "noproc").sample()
    assert not reading.ok and "cannot read interface counters" in reading.error


def statfs_of(sizes: dict):
    def statfs(path: str) -> os.statvfs_result:
        size = sizes[path]
        if isinstance(size, Exception):
            raise size
        return os.statvfs_result((4096, 4096, size // 4096, 0, 0, 0, 0, 0, 0, 255))
    return statfs


def test_volume_sizes_are_read_below_the_root_and_an_unreadable_one_is_named(tmp_path, caplog):
    volumes = [Volume("cache", "gp3", "/models", None, None), Volume("logs", "gp3", "/logs", None, None),
               Volume("given", "gp3", None, 10.0, None)]
    statfs = statfs_of({f"{tmp_path}/models": 4096 * 1000,
                        f"{tmp_path}/logs": PermissionError(13, "Permission denied")})
    with caplog.at_level(logging.WARNING):
        reading = VolumeSource(volumes, tmp_path, statfs).sample()
    assert reading.sizes_bytes == {"cache": 4096000.0}
    assert reading.failures == (("logs", "size_unreadable"),)
    assert f'volume "logs": cannot statfs {tmp_path}/logs: Permission denied' in caplog.text


def test_a_real_mount_path_reads_its_filesystem_size(tmp_path):
    expected = os.statvfs(tmp_path)
    reading = VolumeSource([Volume("tmp", "gp3", str(tmp_path), None, None)]).sample()
    assert reading.sizes_bytes == {"tmp": float(expected.f_blocks * expected.f_frsize)}


def test_hosted_spend_ignores_self_hosted_models_and_counts_bad_samples():
    from ml_cost_exporter.config.schema import parse_config
    from ml_cost_exporter.sources.hosted import HostedSpend

    config = parse_config("models: [{name: llama}]\ntenants: {gateways: [{preset: litellm, url: 'http://g/metrics',"
                          " models: {llama: llama-8b}, hosted_spend: true, self_hosted_models: [vllm/llama]}]}",
                          "x.yaml")
    spend = HostedSpend(config.tenants.gateways[0], max_series=100)

    def text(mini: float, llama: float, other: str = "") -> str:
        return (f'litellm_spend_metric_total{{model="gpt-4o-mini",team="a"}} {mini}\n'
                f'litellm_spend_metric_total{{model="llama-8b",team="a"}} {llama}\n'
                f'litellm_spend_metric_total{{model="vllm/llama",team="a"}} {llama}\n{other}')

    def one(body: str) -> list[tuple[str, str]]:
        return [("http://g/metrics", body)]

    assert spend.deltas(one(text(1.0, 5.0))) == {}  # the baseline
    assert spend.deltas(one(text(1.5, 9.0, 'litellm_spend_metric_total{model="x"} NaN\n'))) == {"gpt-4o-mini": 0.5}
    assert spend.invalid_samples == 1
    assert spend.deltas(one(text(0.25, 1.0))) == {"gpt-4o-mini": 0.25}  # a reset counts the new value, as rate() does
    # Two replicas' counters are their own series: each counts its own increase, and they are summed.
    replicas = HostedSpend(config.tenants.gateways[0], max_series=100)
    assert replicas.deltas([("r1", text(1.0, 0)), ("r2", text(3.0, 0))]) == {}
    assert replicas.deltas([("r1", text(1.5, 0)), ("r2", text(3.25, 0))]) == {"gpt-4o-mini": 0.75}



def test_a_network_filesystem_reporting_exabytes_is_refused_not_priced(tmp_path):
    statfs = statfs_of({f"{tmp_path}/efs": 8 * 2**60})
    reading = VolumeSource([Volume("efs", "gp3", "/efs", None, None)], tmp_path, statfs).sample()
    assert reading.sizes_bytes == {} and reading.failures == (("efs", "implausible"),)
