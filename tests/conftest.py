"""Shared fixtures: an injected clock, the fake NVML library, free ports, polling with a deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import fake_nvml as fake_nvml_lib
from harness.net import free_port, wait_until
from tests.support import tiers
from tests.support.binaries import processes
from tests.support.http import loopback_server

# free_port and wait_until: the tests import them from here; the fixtures: every test may use them
__all__ = ["free_port", "loopback_server", "processes", "wait_until"]

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
REPO = TESTS.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="Rewrite the saved expected /metrics files.")


def pytest_configure(config: pytest.Config) -> None:
    tiers.register(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.apply(items)


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
    lib_dir = tmp_path_factory.mktemp("fake-nvml")
    fake_nvml_lib.build_and_load(lib_dir)
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
