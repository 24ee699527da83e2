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
    assert by_name.ok and by_name.count == 0
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
