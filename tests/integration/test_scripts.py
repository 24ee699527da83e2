"""The scripts a newcomer types: --help answers from a bare copy of the scripts, installing nothing."""

import shutil
import subprocess

import pytest

from tests.conftest import REPO

SCRIPTS = ["scripts/setup.sh", "scripts/test.sh", "scripts/demo.sh", "bench/run.sh"]


@pytest.fixture
def bare_checkout(tmp_path):
    """The scripts and the demo package, without .venv, .venv-demo or .tools."""
    for script in SCRIPTS:
        (tmp_path / script).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / script, tmp_path / script)
    shutil.copytree(REPO / "demo", tmp_path / "demo")
    return tmp_path


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_without_installing_anything(bare_checkout, script):
    before = sorted(p.name for p in bare_checkout.iterdir())
    result = subprocess.run(["bash", str(bare_checkout / script), "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"Usage: bash {script}" in result.stdout
    assert "setup:" not in result.stdout + result.stderr
    assert sorted(p.name for p in bare_checkout.iterdir()) == before


def test_the_demo_help_lists_the_demo_options(bare_checkout):
    result = subprocess.run(["bash", str(bare_checkout / "scripts/demo.sh"), "--help"], capture_output=True,
                            text=True, timeout=30)
    for option in ("--exporter-port", "--prometheus-port", "--load-rps", "--duration"):
        assert option in result.stdout


def test_setup_refuses_an_unknown_purpose(bare_checkout):
    result = subprocess.run(["bash", str(bare_checkout / "scripts/setup.sh"), "everything"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "Usage: bash scripts/setup.sh [demo|test]" in result.stderr
