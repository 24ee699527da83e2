"""Shared fixtures: an injected clock, the fake NVML library, free ports, polling with a deadline."""

from __future__ import annotations

import ctypes
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
REPO = TESTS.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="Rewrite the saved expected /metrics files.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vmalert: runs the rules in real vmalert + VictoriaMetrics beside Prometheus")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


class ManualClock:
    """A clock the test moves: wall time for prices and periods, monotonic for durations."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.mono = 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_794_787_200.0)  # 2026-11-16T00:00:00Z, a Monday


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
               what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the thing polled may not be up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class FakeNvml:
    """The compiled fake libnvidia-ml.so.1 and the state file that drives it."""

    def __init__(self, lib_dir: Path, state: Path) -> None:
        self.lib_dir = lib_dir
        self.state = state

    def write(self, *lines: str) -> None:
        self.state.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def fake_nvml_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile the fake NVML with gcc and load it, so pynvml's dlopen by soname finds it."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required to build the fake libnvidia-ml.so"
    lib_dir = tmp_path_factory.mktemp("fake-nvml")
    library = lib_dir / "libnvidia-ml.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-Wl,-soname,libnvidia-ml.so.1",
                    "-o", str(library), str(TESTS / "fake_nvml" / "fake_nvml.c")], check=True)
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return lib_dir


@pytest.fixture
def fake_nvml(fake_nvml_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    state = tmp_path / "nvml-state.txt"
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    fake = FakeNvml(fake_nvml_library, state)
    fake.write("init 0")
    return fake


A100 = "NVIDIA A100-SXM4-80GB"
GIB = 1024**3
