"""The extra CPU of the storage and network sources per tick, as a ratio against a tick without them.

A runtime with two models behind stubbed servers ticks with and without the volume source (two volumes read
with statfs, one of them a real directory) and the egress source (a sysfs tree of 8 interfaces plus lo),
alternately in one process; the ratio and the absolute extra per tick are printed (a tick is every 15 s by
default, so the extra CPU per tick over 15 s is the share of a core).
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from bench.common import paired
from ml_cost_exporter.runtime import Clocks, HostPaths, Runtime

CONFIG = """
pricing: {provider: aws}
allocation: {vcpus: 4, memory_gib: 16}
models:
  - {name: llama, server: {preset: vllm, url: "http://server/metrics", model: llama}}
storage:
  volumes:
    - {name: cache, class: gp3, path: /models}
    - {name: scratch, class: io2, size_gib: 100}
network: {destination: internet}
collection: {interval_seconds: 15}
"""
VLLM = 'vllm:request_success_total{{model_name="llama",finished_reason="stop"}} {n}\n'


def runtime(root: Path, enabled: frozenset[str]) -> Runtime:
    (root / "models").mkdir(exist_ok=True)
    for i in range(8):
        stats = root / "sys" / "class" / "net" / f"eth{i}" / "statistics"
        stats.mkdir(parents=True, exist_ok=True)
        (stats / "tx_bytes").write_text("1000\n")
    (root / "sys" / "class" / "net" / "lo" / "statistics").mkdir(parents=True, exist_ok=True)
    (root / "sys" / "class" / "net" / "lo" / "statistics" / "tx_bytes").write_text("5\n")
    (root / "pricing.yaml").write_text(CONFIG)
    counter = itertools.count()
    return Runtime(str(root / "pricing.yaml"), enabled, Clocks(), environ={}, cgroup_root=root,
                   server_fetch=lambda url: VLLM.format(n=next(counter)),
                   host=HostPaths(sysfs=root / "sys", procfs=root / "proc", root=root))


def main() -> None:
    with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as base_dir:
        ours = runtime(Path(ours_dir), frozenset({"server", "storage", "network"}))
        base = runtime(Path(base_dir), frozenset({"server"}))
        try:
            with_bill, without = paired(ours.tick, base.tick, rounds=40, inner=10)
        finally:
            ours.close()
            base.close()
    extra = with_bill - without
    print(f"tick with storage+network: {with_bill * 1e6:.0f} us, without: {without * 1e6:.0f} us, "
          f"ratio {with_bill / without:.2f}, extra {extra * 1e6:.0f} us per tick "
          f"({extra / 15 * 100:.4f} % of a core at a 15 s interval)")


if __name__ == "__main__":
    main()
