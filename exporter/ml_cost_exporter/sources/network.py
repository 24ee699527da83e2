"""Bytes the pod sends: its network namespace's interfaces' transmit counters (the sidecar shares the pod's).

Read from <sysfs>/class/net/*/statistics/tx_bytes, else <procfs>/net/dev;
loopback is excluded. Counters are turned into per-tick deltas: an interface
that disappears, a counter that goes back (reset or wrap) and a value that is
not a number are reported by interface and reason, never counted as zero
silently; a jump faster than any NIC is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
EXCLUDED_INTERFACES = ("lo",)
# 800 Gbit/s, above any NIC a pod gets today: a larger jump is a corrupt counter, not traffic.
MAX_BYTES_PER_SECOND = 100e9
_MAX_INTERFACES = 256  # a bound on what is parsed and kept, whatever the namespace holds


@dataclass(frozen=True)
class EgressReading:
    """Bytes sent since the last read, summed over the pod's interfaces, and what could not be counted."""

    ok: bool
    bytes_sent: float = 0.0
    interfaces: tuple[str, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()  # (interface, reason)
    error: str | None = None


def parse_proc_net_dev(text: str) -> dict[str, int]:
    """Transmit bytes by interface from /proc/net/dev text (the 9th number after "name:")."""
    counters: dict[str, int] = {}
    for line in text.splitlines()[2:]:
        name, sep, numbers = line.partition(":")
        fields = numbers.split()
        if not sep or len(fields) < 16 or not fields[8].isdigit():
            continue
        counters[name.strip()] = int(fields[8])
        if len(counters) >= _MAX_INTERFACES:
            break
    return counters


def _read_small(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(64).decode("ascii", "replace").strip()


def read_sysfs_tx_bytes(sysfs: Path) -> tuple[dict[str, int], list[str]] | None:
    """Transmit bytes by interface from sysfs, and the interfaces whose counter is not a number; None
    where the class/net directory is absent (use /proc/net/dev)."""
    base = sysfs / "class" / "net"
    try:
        names = sorted(p.name for p in base.iterdir())[:_MAX_INTERFACES]
    except OSError:
        return None
    counters, unreadable = {}, []
    for name in names:
        try:
            text = _read_small(base / name / "statistics" / "tx_bytes")
        except FileNotFoundError:
            continue  # gone between listing and reading: counted as gone at the delta
        except OSError:
            unreadable.append(name)
            continue
        if text.isdigit():
            counters[name] = int(text)
        else:
            unreadable.append(name)
    return counters, unreadable


@dataclass
class _Counters:
    last: dict[str, int] = field(default_factory=dict)
    at: float | None = None


class EgressSource:
    """The pod's transmit counters as deltas between reads."""

    name = "network"

    def __init__(self, sysfs: Path = Path("/sys"), procfs: Path = Path("/proc"),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sysfs = sysfs
        self._procfs = procfs
        self._monotonic = monotonic
        self._state = _Counters()
        self._reported: set[tuple[str, str]] = set()
        self.last_reading = EgressReading(ok=False, error="not read yet")

    def _read(self) -> tuple[dict[str, int], list[str]]:
        from_sysfs = read_sysfs_tx_bytes(self._sysfs)
        if from_sysfs is not None:
            return from_sysfs
        with (self._procfs / "net" / "dev").open("rb") as handle:
            return parse_proc_net_dev(handle.read(1 << 20).decode("ascii", "replace")), []

    def sample(self) -> EgressReading:
        now = self._monotonic()
        try:
            counters, unreadable = self._read()
        except OSError as exc:
            self.last_reading = EgressReading(ok=False, error=f"cannot read interface counters: {exc}")
            self._warn(("*", "unreadable"), self.last_reading.error)
            return self.last_reading
        counters = {n: v for n, v in counters.items() if n not in EXCLUDED_INTERFACES}
        failures = [(name, "unreadable") for name in unreadable if name not in EXCLUDED_INTERFACES]
        sent = 0.0
        if self._state.at is not None:
            sent = self._deltas(counters, unreadable, now - self._state.at, failures)
        kept = {n: self._state.last[n] for n in unreadable if n in self._state.last}  # compare next time
        self._state = _Counters({**kept, **counters}, now)
        for failure in failures:
            self._warn(failure, f"interface {failure[0]}: {failure[1].replace('_', ' ')}")
        self.last_reading = EgressReading(True, sent, tuple(sorted(counters)), tuple(failures))
        return self.last_reading

    def _deltas(self, counters: Mapping[str, int], unreadable: list[str], seconds: float,
                failures: list[tuple[str, str]]) -> float:
        """Bytes sent per interface since the last read, summed; what cannot be counted goes to `failures`."""
        bound = MAX_BYTES_PER_SECOND * max(seconds, 1.0)
        sent = 0.0
        for name in self._state.last:
            if name not in counters and name not in unreadable:
                failures.append((name, "interface_gone"))
        for name, value in counters.items():
            previous = self._state.last.get(name, 0)  # a new interface: everything it sent is new
            if value < previous:
                failures.append((name, "counter_reset"))  # what it sent before the reset is lost
                delta = value
            else:
                delta = value - previous
            if delta > bound:
                failures.append((name, "implausible"))
                continue
            sent += delta
        return sent

    def _warn(self, key: tuple[str, str], message: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.warning("network: %s; that interval's egress is reported as unpriced", message)

    def close(self) -> None:
        """Nothing to release."""
