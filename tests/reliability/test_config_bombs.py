"""Issue 9, case 4: hostile config files are refused at once with one line and exit 2; reload keeps the last good."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tracemalloc

import pytest

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import MAX_FILE_BYTES, MAX_NODES
from ml_cost_exporter.config.schema import load_config
from ml_cost_exporter.runtime import Clocks, Runtime


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The reported file: each level a list of `width` aliases to the level before."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def mapping_bomb() -> str:
    """The same growth through mappings and block style."""
    lines = ["x0: &x0 {k0: v, k1: v, k2: v, k3: v, k4: v, k5: v, k6: v, k7: v, k8: v, k9: v}"]
    for level in range(1, 8):
        keys = ", ".join(f"k{i}: *x{level - 1}" for i in range(10))
        lines.append(f"x{level}: &x{level} {{{keys}}}")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias-bomb": (alias_bomb(), "once aliases are expanded"),
    "mapping-bomb": (mapping_bomb(), "once aliases are expanded"),
    "deep-flow-nesting": ("models: " + "[" * 100_000 + "]" * 100_000 + "\n", "nest"),  # libyaml stops it first
    "deep-block-nesting": ("".join(f"{'  ' * i}k{i}:\n" for i in range(200)), "nested deeper than 64 levels"),
    "recursive-alias": ("a: &a [*a]\n", "refers to a node that contains it"),
    "many-values": ("models: [" + "1," * (MAX_NODES + 10) + "]\n", f"more than {MAX_NODES} values"),
    "oversized": ("# padding\n" * (MAX_FILE_BYTES // 10 + 10), f"larger than {MAX_FILE_BYTES} bytes"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_refused_quickly_in_bounded_memory_with_one_line(tmp_path, name):
    text, message = HOSTILE[name]
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ConfigError, match=message) as failure:
            load_config(path)
        cpu = time.process_time() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "pricing.yaml" in str(failure.value) and "\n" not in str(failure.value)
    assert cpu < 2.0, f"{name}: {cpu:.2f}s of CPU to refuse it"  # goal < 1 s; tracemalloc slows it
    assert peak < 16 * 1024 * 1024, f"{name}: {peak} bytes to refuse it"


def test_the_reported_alias_bomb_exits_2_with_one_line(tmp_path):
    path = tmp_path / "pricing.yaml"
    path.write_text(alias_bomb())
    result = subprocess.run([sys.executable, "-m", "ml_cost_exporter", "--config.file", str(path),
                             "--no-collector.gpu", "--web.listen-address", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ml-cost-exporter: pricing.yaml:5: a4[5]: more than 50000 values once aliases are expanded "
        "(an alias bomb?)"]


def test_small_aliases_still_work(tmp_path):
    path = tmp_path / "pricing.yaml"
    path.write_text("models:\n  - {name: a, labels: &team {team: search}}\n  - {name: b, labels: *team}\n")
    config = load_config(path)
    assert [dict(m.labels) for m in config.models] == [{"team": "search"}, {"team": "search"}]


def test_a_hostile_file_on_reload_is_logged_and_the_last_good_config_stays(tmp_path, clock, caplog):
    path = tmp_path / "pricing.yaml"
    path.write_text("models: [{name: a}]\n")
    runtime = Runtime(str(path), frozenset(), Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path)
    for name, (text, message) in HOSTILE.items():
        path.write_text(text)
        assert runtime.reload() is False, name
        assert re.search(message, caplog.text)
        assert [m.name for m in runtime.config.models] == ["a"]
    assert runtime.state().reload.successful is False
