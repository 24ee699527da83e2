import os
import re
import subprocess
import sys
import uuid

import pytest

from ml_cost_exporter.config.schema import ProcessSelection
from ml_cost_exporter.sources.processes import ProcessSource
from tests.conftest import wait_until

BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\ninput()\n"


@pytest.fixture
def busy_child():
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=0.3), "mlcost-test-marker"],
                             stdin=subprocess.PIPE)
    yield child
    child.kill()
    child.wait()


def test_cpu_time_of_selected_processes_accrues_from_a_baseline(busy_child):
    source = ProcessSource(ProcessSelection((), (re.compile("mlcost-test-marker"),)))
    first = source.sample()
    assert first.ok and first.count == 1 and first.cpu_seconds_delta == 0.0  # first sample is the baseline
    assert first.resident_memory_bytes > 1_000_000

    def burned() -> float:
        sample = source.sample()
        return sample.cpu_seconds_total if sample.cpu_seconds_total >= 0.25 else 0.0

    total = wait_until(burned, timeout=20, what="the child's CPU time to be counted")
    assert total < 2.0


def test_selection_by_name_and_the_exporter_never_counts_itself():
    by_name = ProcessSource(ProcessSelection(("no-such-process-name",), ())).sample()
    assert not by_name.ok and by_name.count == 0 and "no serving process is visible" in by_name.error
    # A process with a unique marker in its argv selects itself: the source excludes its own process.
    marker = f"mlcost-self-{uuid.uuid4().hex}"
    code = ("import re, sys\n"
            "from ml_cost_exporter.config.schema import ProcessSelection\n"
            "from ml_cost_exporter.sources.processes import ProcessSource\n"
            "selection = ProcessSelection((), (re.compile(sys.argv[1]),))\n"
            "print(ProcessSource(selection).sample().count, ProcessSource(selection, exclude_pid=-1).sample().count)")
    result = subprocess.run([sys.executable, "-c", code, marker], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["0", "1"]


def test_an_exited_process_never_makes_the_counter_go_down(busy_child):
    source = ProcessSource(ProcessSelection((), (re.compile("mlcost-test-marker"),)))
    source.sample()
    wait_until(lambda: source.sample().cpu_seconds_total >= 0.25, what="CPU time")
    before = source.sample().cpu_seconds_total
    busy_child.kill()
    busy_child.wait()
    after = source.sample()
    assert after.count == 0 and after.cpu_seconds_total >= before


# --- the /proc reader, on literal text and a fake /proc tree -------------------------------------
def stat_line(pid: int, name: str, utime: int, stime: int, start: int, rss_pages: int, flags: int = 0x400000) -> str:
    fields = ["S", "1", str(pid), str(pid), "0", "-1", str(flags), *["0"] * 4, str(utime), str(stime),
              "0", "0", "20", "0", "1", "0", str(start), "123456", str(rss_pages)]
    return f"{pid} ({name}) " + " ".join(fields) + " 0 0 0\n"


def test_a_stat_line_gives_name_cpu_seconds_start_and_resident_bytes():
    from ml_cost_exporter.sources.processes import parse_stat

    stat = parse_stat(stat_line(42, "vllm (serve) x", 250, 50, 9000, 10), ticks_per_second=100, page_bytes=4096)
    assert (stat.pid, stat.name, stat.kernel_thread) == (42, "vllm (serve) x", False)
    assert (stat.cpu_seconds, stat.start_ticks, stat.rss_bytes) == (3.0, 9000.0, 40960.0)
    assert parse_stat(stat_line(2, "kthreadd", 0, 0, 1, 0, flags=0x208040), 100, 4096).kernel_thread


@pytest.mark.parametrize("text", ["", "42", "42 (x", "x (y) S 1 2", "42 (x) S " + "a " * 30, "(x) " + "0 " * 30])
def test_a_stat_line_that_is_not_one_reads_as_none(text):
    from ml_cost_exporter.sources.processes import parse_stat

    assert parse_stat(text, 100, 4096) is None


def fake_proc(root, processes: dict[int, tuple[str, str, int, int]]) -> None:
    """A /proc tree: pid -> (stat name, cmdline, CPU ticks, flags)."""
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "self" / "stat").write_text(stat_line(1, "self", 0, 0, 1, 1))
    for pid, (name, cmdline, ticks, flags) in processes.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(stat_line(pid, name, ticks, 0, 100 + pid, 256, flags))
        (root / str(pid) / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + b"\0")


def test_the_proc_scan_skips_kernel_threads_and_reads_command_lines_only_for_patterns(tmp_path):
    fake_proc(tmp_path, {10: ("python3", "python3 -m vllm.entrypoints.openai.api_server", 500, 0x400000),
                         11: ("kworker/0:1", "", 900, 0x04208060),
                         12: ("very_long_serve", "/opt/bin/very_long_server_name --port 8000", 200, 0x400000),
                         13: ("bash", "bash", 100, 0x400000)})
    everything = ProcessSource(ProcessSelection((), ()), exclude_pid=13, proc_root=tmp_path)
    sample = everything.sample()
    assert (sample.count, sample.resident_memory_bytes) == (2, 2 * 256 * os.sysconf("SC_PAGE_SIZE"))
    by_name = ProcessSource(ProcessSelection(("very_long_server_name",), ()), exclude_pid=-1, proc_root=tmp_path)
    assert by_name.sample().count == 1  # the truncated kernel name is completed from the command line
    by_pattern = ProcessSource(ProcessSelection((), (re.compile(r"vllm\.entrypoints"),)), exclude_pid=-1,
                               proc_root=tmp_path)
    by_pattern.sample()
    fake_proc(tmp_path, {10: ("python3", "python3 -m vllm.entrypoints.openai.api_server", 800, 0x400000)})
    assert by_pattern.sample().cpu_seconds_delta == pytest.approx(300 / os.sysconf("SC_CLK_TCK"))
