"""The checkpoint directory as an attacker or a second exporter leaves it: planted links, odd files, a held lock."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.storage import checkpoint
from ml_cost_exporter.storage.checkpoint import FILE_NAME, LOCK_NAME, Checkpointer, decode
from tests.conftest import free_port, wait_until


class Part:
    def __init__(self) -> None:
        self.state = {"usd": 1.5}
        self.restored = None

    def export_state(self) -> dict:
        return self.state

    def restore_state(self, state: dict) -> None:
        self.restored = state


def checkpointer(directory: Path) -> tuple[Checkpointer, Part]:
    keeper, part = Checkpointer(directory, lambda: 1_794_787_260.0), Part()
    keeper.register("ledger", part)
    return keeper, part


def plant(kind: str, at: Path, victim: Path) -> None:
    if kind == "symlink-to-victim":
        at.symlink_to(victim)
    elif kind == "dangling-symlink":
        at.symlink_to(victim.with_name("does-not-exist-yet"))
    elif kind == "hardlink-to-victim":
        os.link(victim, at)
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "directory":
        at.mkdir()


PLANTED = ["symlink-to-victim", "dangling-symlink", "hardlink-to-victim", "fifo", "directory"]


@pytest.mark.parametrize("kind", PLANTED)
def test_whatever_is_planted_at_the_temporary_name_is_never_written_through(tmp_path, monkeypatch, kind):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    keeper, _ = checkpointer(state)
    monkeypatch.setattr(checkpoint.secrets, "token_hex", lambda _n: "guessed")
    planted = state / f".{FILE_NAME}.tmp-{os.getpid()}-guessed"
    plant(kind, planted, victim)
    assert keeper.write() is False and keeper.write_failures_total == 1
    assert victim.read_text() == "precious\n" and not victim.with_name("does-not-exist-yet").exists()
    monkeypatch.undo()
    assert keeper.write() is True  # a fresh, unpredictable name the next time


@pytest.mark.parametrize("kind", PLANTED[:2])
def test_the_old_predictable_temporary_name_is_no_longer_used(tmp_path, kind):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    keeper, _ = checkpointer(tmp_path / "state")
    plant(kind, tmp_path / "state" / f".{FILE_NAME}.tmp-{os.getpid()}", victim)
    assert keeper.write() is True
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(os.stat(keeper.path).st_mode) == 0o600
    assert decode(keeper.path.read_bytes())[1] == {"ledger": {"usd": 1.5}}


def make_socket(at: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(at))
    return server


ODD_FILES = {
    "fifo": (lambda at: os.mkfifo(at), "not a regular file (a FIFO)"),
    "directory": (lambda at: at.mkdir(), "not a regular file (a directory)"),
    "symlink-to-dev-zero": (lambda at: at.symlink_to("/dev/zero"), "is a symbolic link"),
    "symlink-to-a-file": (lambda at: at.symlink_to("/etc/hostname"), "is a symbolic link"),
    "unix-socket": (make_socket, "No such device or address"),
}


@pytest.mark.parametrize(("make", "reason"), ODD_FILES.values(), ids=ODD_FILES.keys())
def test_a_non_regular_file_at_the_checkpoint_path_is_set_aside_at_once(tmp_path, caplog, make, reason):
    state = tmp_path / "state"
    keeper, part = checkpointer(state)
    made = make(keeper.path)
    outcomes = []
    with caplog.at_level(logging.INFO):
        reader = threading.Thread(target=lambda: outcomes.append(keeper.restore()), daemon=True)
        reader.start()
        reader.join(10)
    assert outcomes, "restore() hung on the file"
    assert outcomes[0].restored == () and reason in outcomes[0].problem and part.restored is None
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith(f"checkpoint {keeper.path} cannot be used: {reason}; kept aside as {FILE_NAME}.bad-")
    assert keeper.write() is True and decode(keeper.path.read_bytes())[1] == {"ledger": {"usd": 1.5}}
    if made is not None:
        made.close()


HOLD = """
import sys, time
from pathlib import Path
from ml_cost_exporter.storage.checkpoint import Checkpointer
Checkpointer(Path(sys.argv[1]), time.time)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_process_on_the_same_directory_is_refused_naming_the_path_and_the_holder(tmp_path):
    state = tmp_path / "state"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError) as error:
            Checkpointer(state, lambda: 0.0)
        assert str(error.value) == (f"{state}: --storage.path is in use by another exporter (pid {holder.pid}, "
                                    f"lock {LOCK_NAME}); give each exporter its own")
    finally:
        holder.stdin.close()
        holder.wait(10)
    Checkpointer(state, lambda: 0.0)  # the lock went with the process


def test_a_second_exporter_on_one_storage_path_exits_2_with_one_line(tmp_path):
    state = tmp_path / "state"
    port = free_port()
    first = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter", "--storage.path", str(state),
                              "--web.listen-address", f"127.0.0.1:{port}", "--no-collector.gpu"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (state / FILE_NAME).exists(), what="the first exporter's checkpoint")
        second = subprocess.run([sys.executable, "-m", "ml_cost_exporter", "--storage.path", str(state),
                                 "--web.listen-address", "127.0.0.1:0", "--no-collector.gpu"],
                                capture_output=True, text=True, timeout=60)
    finally:
        first.terminate()
        first.wait(20)
    assert second.returncode == 2
    assert second.stderr.splitlines()[-1] == (
        f"ml-cost-exporter: {state}: --storage.path is in use by another exporter (pid {first.pid}, lock "
        f"{LOCK_NAME}); give each exporter its own")
