"""One versioned, checksummed JSON document of named sections, written atomically every interval.

Each stateful part (the ledger is section "ledger") implements `export_state()`
and `restore_state(state)`. The file is read like hostile input: a bad one, or
anything at its path that is not a regular file, is set aside under a new name
with one log line and the exporter starts fresh. Writing never raises: failures
are counted and logged once per streak. The temporary file is created
exclusively and never through a symbolic link. One exporter per directory: an
advisory lock, held for the process's life, makes a second one refuse to start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ml_cost_exporter.config.errors import ConfigError

log = logging.getLogger(__name__)

FILE_NAME = "mlcost-checkpoint.json"
FORMAT = "ml-cost-exporter/checkpoint"
VERSION = 1
MAX_BYTES = 8 * 1024 * 1024  # a pod's ledger is a few kB; anything this large is not ours
LOCK_NAME = ".mlcost-checkpoint.lock"
KEEP_ASIDE = 3  # bad files kept for inspection; older ones are removed so a loop cannot fill the disk


class Stateful(Protocol):
    def export_state(self) -> dict: ...

    def restore_state(self, state: dict) -> None: ...


@dataclass(frozen=True)
class RestoreOutcome:
    restored: tuple[str, ...]  # sections adopted
    written_at: float | None  # when the adopted checkpoint was written
    problem: str | None  # why the file, or part of it, was not trusted


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def encode(sections: dict[str, dict], written_at: float) -> bytes:
    """The checkpoint document: format, version, time, sections and a SHA-256 over all of them."""
    body = {"format": FORMAT, "version": VERSION, "written_at": written_at, "sections": sections}
    return _canonical({**body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()}) + b"\n"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def decode(data: bytes) -> tuple[float, dict[str, object]]:
    """(written_at, sections) of a checkpoint; raises ValueError saying what is wrong with it."""
    if not data.strip():
        raise ValueError("the file is empty")
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON, truncated or corrupt ({exc.msg} at byte {exc.pos})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f'not an ml-cost-exporter checkpoint (no "format": "{FORMAT}")')
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"version {version!r} is not an integer")
    if version != VERSION:
        newer = "newer than" if version > VERSION else "older than"
        raise ValueError(f"format version {version} is {newer} the version this build reads ({VERSION})")
    claimed = document.pop("sha256", None)
    if claimed != hashlib.sha256(_canonical(document)).hexdigest():
        raise ValueError("checksum mismatch: the file was edited or damaged")
    written_at, sections = document.get("written_at"), document.get("sections")
    if isinstance(written_at, bool) or not isinstance(written_at, int | float) or not math.isfinite(written_at):
        raise ValueError(f"written_at {written_at!r} is not a time")
    if not isinstance(sections, dict):
        raise ValueError("sections is not an object")
    return float(written_at), sections


def read_bounded(path: Path, limit: int = MAX_BYTES) -> bytes:
    """A regular file's bytes, refusing more than `limit`, links, FIFOs and devices without waiting on them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("is a symbolic link") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"not a regular file ({_kind(mode)})")
    with open(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a file")


_HELD_LOCKS: dict[tuple[int, int], int] = {}  # (device, inode) of a locked directory -> the lock file's descriptor
_HELD_LOCKS_GUARD = threading.Lock()


def lock_directory(directory: Path) -> None:
    """Hold an advisory lock on `directory` for this process's life; ConfigError where another process holds it.

    A directory that cannot be locked (read-only, say) is logged and used unlocked, as writes to it will fail and
    be counted anyway.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        identity = (directory.stat().st_dev, directory.stat().st_ino)
        with _HELD_LOCKS_GUARD:
            if identity not in _HELD_LOCKS:
                _HELD_LOCKS[identity] = _take_lock(directory / LOCK_NAME)
    except OSError as exc:
        log.warning("cannot lock %s: %s; a second exporter on it would not be refused", directory,
                    exc.strerror or exc)


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(str(path.parent), None, "", f"--storage.path is in use by another exporter (pid {holder}, "
                                                      f"lock {path.name}); give each exporter its own") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Checkpointer:
    """Writes and restores the checkpoint `FILE_NAME` in one directory for the registered parts."""

    def __init__(self, directory: Path, wall: Callable[[], float]) -> None:
        """Raises ConfigError where another process holds the directory's lock."""
        self.directory = Path(directory)
        lock_directory(self.directory)
        self._remove_stale_temps()
        self.path = self.directory / FILE_NAME
        self._wall = wall
        self._parts: dict[str, Stateful] = {}
        self._lock = threading.Lock()
        self.write_failures_total = 0
        self.last_success_timestamp: float | None = None
        self._failing = False

    def register(self, name: str, part: Stateful) -> None:
        """Give `part` the section `name`; register before `restore()` to be restored."""
        self._parts[name] = part

    def restore(self) -> RestoreOutcome:
        """Restore every registered part from the file; never raises."""
        try:
            written_at, sections = decode(read_bounded(self.path))
        except FileNotFoundError:
            log.info("no checkpoint at %s: starting fresh", self.path)
            return RestoreOutcome((), None, None)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return self._untrusted(f"cannot be used: {reason}", ())
        restored, problems, absent = [], [], []
        for name, part in self._parts.items():
            if name not in sections:
                absent.append(name)  # a part added since the file was written: it starts fresh
                continue
            try:
                part.restore_state(sections[name])
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"section {name}: {exc}")
            else:
                restored.append(name)
        if problems:
            return self._untrusted("; ".join(problems), tuple(restored), written_at)
        fresh = f" ({','.join(absent)} not in the file: fresh)" if absent else ""
        log.info("restored %s from %s, written at %.3f%s", ",".join(restored) or "nothing", self.path, written_at,
                 fresh)
        return RestoreOutcome(tuple(restored), written_at, None)

    def _untrusted(self, problem: str, restored: tuple[str, ...], written_at: float | None = None) -> RestoreOutcome:
        aside = self.path.with_name(f"{FILE_NAME}.bad-{int(self._wall())}")
        try:
            os.replace(self.path, aside)
            kept = f"kept aside as {aside.name}"
            self._prune_aside()
        except OSError as exc:
            kept = f"could not be set aside ({exc.strerror or exc})"
        fresh = f"restored {','.join(restored)}, the rest starts fresh" if restored else "starting fresh"
        log.error("checkpoint %s %s; %s; %s", self.path, problem, kept, fresh)
        return RestoreOutcome(restored, written_at if restored else None, problem)

    def _prune_aside(self) -> None:
        aside = sorted(self.directory.glob(f"{FILE_NAME}.bad-*"), key=lambda p: p.name)
        for old in aside[:-KEEP_ASIDE]:
            if old.is_dir():
                continue  # an odd directory in the way is left for a person to look at
            with contextlib.suppress(OSError):
                old.unlink()

    def write(self) -> bool:
        """Write every part's state atomically (temp file, fsync, rename, fsync the directory)."""
        with self._lock:
            now = self._wall()
            try:
                data = encode({name: part.export_state() for name, part in self._parts.items()}, now)
                self._replace(data)
            except (OSError, ValueError, TypeError) as exc:
                self.write_failures_total += 1
                level = logging.DEBUG if self._failing else logging.WARNING
                log.log(level, "cannot write checkpoint %s: %s (failure %d; cost keeps accruing in memory)",
                        self.path, getattr(exc, "strerror", None) or exc, self.write_failures_total)
                self._failing = True
                return False
            if self._failing:
                log.info("checkpoint %s written again", self.path)
            self._failing = False
            self.last_success_timestamp = now
            return True

    def _remove_stale_temps(self) -> None:
        """Temporary files left by a writer that died between create and rename (unlinked, never followed)."""
        for stale in self.directory.glob(f".{FILE_NAME}.tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _replace(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.directory / f".{FILE_NAME}.tmp-{os.getpid()}-{secrets.token_hex(8)}"
        # Exclusive and not through a link: whatever is planted at the name, this open fails instead of writing.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
