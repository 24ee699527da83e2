"""The checkpoint on disk: written atomically, read like hostile input, never stops the exporter."""

import contextlib
import json
import logging
import os
import resource
import signal
import textwrap

import pytest

from ml_cost_exporter.runtime import Clocks, Runtime
from ml_cost_exporter.storage.checkpoint import FILE_NAME, KEEP_ASIDE, LOCK_NAME, MAX_BYTES, decode, encode

CONFIG = textwrap.dedent("""
    allocation: {vcpus: 4, memory_gib: 16}
    models: [{name: a}, {name: b}]
    budgets: [{name: all, amount_usd: 100}]
""")
HOURLY = 4 * 0.031611 + 16 * 0.004237  # AWS unit rates: vCPUs and memory only


def start(tmp_path, clock, storage=None, max_gap=900.0) -> Runtime:
    config = tmp_path / "pricing.yaml"
    config.write_text(CONFIG)
    storage = storage or tmp_path / "state"
    return Runtime(str(config), frozenset(), Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path,
                   storage_path=str(storage), max_gap_seconds=max_gap)


def total(runtime: Runtime) -> float:
    return sum(runtime.books.ledger.snapshot(runtime.clocks.wall()).usd_total.values())


def checkpoint_after_an_hour(tmp_path, clock) -> bytes:
    runtime = start(tmp_path, clock)
    clock.advance(3600)
    runtime.tick()
    return (tmp_path / "state" / FILE_NAME).read_bytes()


def test_a_restart_continues_the_totals_and_accrues_the_downtime(tmp_path, clock):
    runtime = start(tmp_path, clock)
    clock.advance(3600)
    runtime.tick()
    assert total(runtime) == pytest.approx(HOURLY)
    clock.advance(120)  # killed here, before the next tick: 120 s nobody measured
    clock.advance(180)  # down for 180 s
    again = start(tmp_path, clock)
    assert again.state_restored is True
    assert again.state_gap_accrued_seconds == pytest.approx(300)
    assert total(again) == pytest.approx(HOURLY * 3900 / 3600)
    clock.advance(60)
    again.tick()
    assert total(again) == pytest.approx(HOURLY * 3960 / 3600)


def test_a_clean_shutdown_writes_a_last_checkpoint_up_to_now(tmp_path, clock):
    runtime = start(tmp_path, clock)
    clock.advance(100)
    runtime.tick()
    clock.advance(5)
    runtime.close()
    _, sections = decode((tmp_path / "state" / FILE_NAME).read_bytes())
    assert sections["ledger"]["accrued_until"] == clock.wall()
    again = start(tmp_path, clock)
    assert total(again) == pytest.approx(HOURLY * 105 / 3600)


def test_a_gap_longer_than_the_limit_is_logged_and_not_accrued(tmp_path, clock, caplog):
    checkpoint_after_an_hour(tmp_path, clock)
    clock.advance(3600)
    with caplog.at_level(logging.WARNING):
        again = start(tmp_path, clock, max_gap=900)
    assert again.state_restored and again.state_gap_accrued_seconds == 0.0
    assert total(again) == pytest.approx(HOURLY)
    assert any("more than --storage.max-gap" in r.getMessage() for r in caplog.records)


def resigned(data: bytes, edit) -> bytes:
    """The checkpoint with `edit` applied to its ledger section and a valid checksum (a deliberate edit)."""
    document = json.loads(data)
    edit(document["sections"]["ledger"])
    return encode(document["sections"], document["written_at"])


def set_row(table, column, value):
    def edit(ledger):
        ledger[table][0][column] = value
    return edit


def newer(data: bytes) -> bytes:
    document = json.loads(data)
    document["version"] = 2
    return json.dumps(document).encode()


BAD_FILES = {
    "empty": lambda data: b"",
    "whitespace": lambda data: b"  \n",
    "truncated-mid-write": lambda data: data[: len(data) // 2],
    "corrupt-bytes": lambda data: data[:40] + b"\xff\xfe\x00" + data[43:],
    "binary": lambda data: os.urandom(512),
    "foreign-json": lambda data: b'{"format": "something-else", "version": 1}',
    "json-list": lambda data: b"[1, 2, 3]",
    "newer-version": newer,
    "edited-without-checksum": lambda data: data.replace(b'"accrued_until":1', b'"accrued_until":2', 1),
    "checksum-removed": lambda data: data.replace(b'"sha256"', b'"sha1"'),
    "nan-literal": lambda data: data.replace(b'"written_at":', b'"written_at":NaN,"x":', 1),
    "negative-value": lambda data: resigned(data, set_row("usd", 4, -3.0)),
    "huge-value": lambda data: resigned(data, set_row("usd", 4, 1e300)),
    "overflowing-value": lambda data: data.replace(b'"since":', b'"since":1e400,"x":', 1),
    "wrong-type": lambda data: resigned(data, set_row("usd", 4, "3.0")),
    "missing-field": lambda data: resigned(data, lambda ledger: ledger.pop("accrued_until")),
    "deeply-nested": lambda data: b"[" * 100_000 + b"]" * 100_000,
    "oversized": lambda data: b" " * (MAX_BYTES + 1),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_checkpoint_is_set_aside_with_one_line_and_the_exporter_starts_fresh_and_accrues(
        name, tmp_path, clock, caplog):
    data = checkpoint_after_an_hour(tmp_path, clock)
    path = tmp_path / "state" / FILE_NAME
    path.write_bytes(BAD_FILES[name](data))
    bad = path.read_bytes()
    assert bad != data
    with caplog.at_level(logging.INFO, logger="ml_cost_exporter.storage"):
        again = start(tmp_path, clock)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and str(path) in errors[0].getMessage() and "kept aside" in errors[0].getMessage()
    assert again.state_restored is False
    assert total(again) == 0.0  # nothing it cannot trust was adopted
    aside = list((tmp_path / "state").glob(f"{FILE_NAME}.bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad
    clock.advance(60)
    again.tick()  # keeps accruing and writes a good checkpoint again
    assert total(again) == pytest.approx(HOURLY / 60)
    assert start(tmp_path, clock).state_restored is True


def test_an_unreadable_checkpoint_is_set_aside(tmp_path, clock, caplog):
    path = tmp_path / "state" / FILE_NAME
    path.mkdir(parents=True)  # a read fails with EISDIR, as any read error would
    with caplog.at_level(logging.ERROR):
        again = start(tmp_path, clock)
    assert again.state_restored is False
    assert "kept aside" in caplog.records[-1].getMessage()
    clock.advance(60)
    again.tick()
    assert path.is_file()


def test_no_checkpoint_starts_fresh_quietly(tmp_path, clock, caplog):
    with caplog.at_level(logging.WARNING):
        runtime = start(tmp_path, clock)
    assert runtime.state_restored is False and not caplog.records


def test_bad_files_kept_aside_are_bounded(tmp_path, clock):
    state = tmp_path / "state"
    state.mkdir()
    for _ in range(KEEP_ASIDE + 3):
        (state / FILE_NAME).write_bytes(b"garbage")
        start(tmp_path, clock)
        clock.advance(1)
    assert len(list(state.glob(f"{FILE_NAME}.bad-*"))) == KEEP_ASIDE


@contextlib.contextmanager
def read_only(directory):
    """A directory this process cannot write to: mode 0555, and as root the effective uid of nobody."""
    directory.chmod(0o555)
    as_root = os.geteuid() == 0
    try:
        if as_root:
            os.seteuid(65534)
        yield
    finally:
        if as_root:
            os.seteuid(0)
        directory.chmod(0o755)


@contextlib.contextmanager
def disk_full(limit_bytes=64):
    """Writes past `limit_bytes` fail (RLIMIT_FSIZE, EFBIG), as on a full volume."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("fault", [read_only, disk_full], ids=["read-only-directory", "full-disk"])
def test_a_failing_write_is_counted_logged_once_and_keeps_the_last_good_checkpoint(fault, tmp_path, clock, caplog):
    runtime = start(tmp_path, clock)
    clock.advance(60)
    runtime.tick()
    state = tmp_path / "state"
    good = (state / FILE_NAME).read_bytes()
    with caplog.at_level(logging.WARNING), (fault(state) if fault is read_only else fault()):
        for _ in range(3):
            clock.advance(60)
            runtime.tick()
    assert runtime.checkpointer.write_failures_total == 3
    assert runtime.checkpointer.last_success_timestamp == clock.wall() - 180
    assert len([r for r in caplog.records if "cannot write checkpoint" in r.getMessage()]) == 1
    assert total(runtime) == pytest.approx(HOURLY * 240 / 3600)  # accrual goes on in memory
    assert (state / FILE_NAME).read_bytes() == good  # the last good checkpoint is intact
    assert sorted(p.name for p in state.iterdir()) == [LOCK_NAME, FILE_NAME]  # no temp file left behind
    clock.advance(60)
    runtime.tick()
    assert runtime.checkpointer.last_success_timestamp == clock.wall()
