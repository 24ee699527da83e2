"""The live upstream tier: real inference servers, installed by scripts/upstream-setup.sh, run on loopback.

It runs only when asked for by marker (`pytest -m upstream tests/upstream`): the installs take minutes,
so a plain `pytest` leaves these tests out (deselected, not skipped).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

SETUP = REPO / "scripts" / "upstream-setup.sh"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "upstream" in (config.option.markexpr or ""):
        return
    upstream = [item for item in items if item.get_closest_marker("upstream")]
    if upstream:
        config.hook.pytest_deselected(items=upstream)
        items[:] = [item for item in items if not item.get_closest_marker("upstream")]


@pytest.fixture(scope="session")
def upstream_venv() -> Callable[[str], Path]:
    """Install (once, at its pinned versions) and return the virtual environment of one upstream server."""
    def venv(server: str) -> Path:
        subprocess.run(["bash", str(SETUP), server], check=True, timeout=900)
        return REPO / ".venv-upstream" / server
    return venv
