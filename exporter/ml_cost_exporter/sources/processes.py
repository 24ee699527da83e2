"""CPU and memory of the serving processes: /proc on Linux, psutil elsewhere.

In Kubernetes the pod shares one process namespace (shareProcessNamespace), so
the sidecar sees the inference server's processes. With no selection every
process but the exporter itself (and the kernel's own threads) counts.

On Linux a scan reads one /proc/PID/stat per process (name, CPU time, start
time, resident pages and the kernel-thread flag are all in it) and the command
line only where a pattern needs it: psutil opened about five files a process,
which made the scan most of the exporter's idle CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.config.schema import ProcessSelection
from ml_cost_exporter.sources.nvml import visible_devices


@dataclass(frozen=True)
class ProcessSample:
    ok: bool
    count: int = 0
    cpu_seconds_total: float = 0.0  # accumulated by this source, so it never decreases
    cpu_seconds_delta: float = 0.0  # since the previous sample
    resident_memory_bytes: float = 0.0
    error: str | None = None


NO_PROCESS = "no serving process is visible (the selection, hidepid, or a pod without shareProcessNamespace)"
def _psutil():
    """psutil, imported where there is no /proc to read: it costs the sidecar about 3 MB of memory."""
    import psutil

    return psutil


def _psutil_errors() -> tuple[type[BaseException], ...]:
    import sys

    psutil = sys.modules.get("psutil")  # only a scan through psutil can raise its errors
    return (psutil.Error,) if psutil is not None else ()


def _read_environ(proc: Path, pid: int) -> dict[str, str]:
    """Another process's environment (same user, or CAP_SYS_PTRACE), from /proc/PID/environ."""
    with open(proc / str(pid) / "environ", "rb") as handle:
        raw = handle.read(1 << 20)
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread
COMM_LENGTH = 15  # the kernel truncates a process name to this many bytes


@dataclass(frozen=True)
class ProcStat:
    """What one /proc/PID/stat line says, in the units the exporter uses."""

    pid: int
    name: str
    kernel_thread: bool
    cpu_seconds: float
    start_ticks: float
    rss_bytes: float


def parse_stat(text: str, ticks_per_second: float, page_bytes: int) -> ProcStat | None:
    """One /proc/PID/stat line; None if it is not one (the name may hold spaces and parentheses)."""
    head, sep, tail = text.rpartition(")")
    pid_text, _, name = head.partition(" (")
    fields = tail.split()
    if not sep or len(fields) < 22 or not pid_text.strip().isdigit():
        return None
    try:
        flags, utime, stime, start, rss = (int(fields[i]) for i in (6, 11, 12, 19, 21))
    except ValueError:
        return None
    return ProcStat(int(pid_text), name, bool(flags & PF_KTHREAD), (utime + stime) / ticks_per_second,
                    float(start), max(rss, 0) * page_bytes)


class ProcessSource:
    def __init__(self, selection: ProcessSelection, exclude_pid: int | None = None,
                 iterate: Callable[..., object] | None = None, proc_root: Path = Path("/proc")) -> None:
        self._selection = selection
        self._exclude = os.getpid() if exclude_pid is None else exclude_pid
        # psutil only where there is no /proc to read (or a test scripts psutil's iterator).
        self._iterate = iterate or (None if (proc_root / "self" / "stat").exists() else _psutil().process_iter)
        self._proc = proc_root
        self._ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create_time) -> CPU seconds last seen
        self._total = 0.0
        self._sampled_once = False

    def gpu_devices(self) -> tuple[str, ...] | None:
        """The GPUs the serving processes were given (their NVIDIA_/CUDA_VISIBLE_DEVICES), or None for all.

        Reading another process's environment needs the same user (or CAP_SYS_PTRACE): in Kubernetes the
        sidecar runs as the pod's user. Processes whose environment cannot be read are skipped.
        """
        devices: list[str] = []
        for pid, _created in self._cpu:
            try:
                environ = _read_environ(self._proc, pid)
            except (OSError, UnicodeDecodeError):
                continue
            found = visible_devices(None, environ)
            if found is None:
                return None  # a serving process sees every GPU
            devices.extend(d for d in found if d not in devices)
        return tuple(devices) if devices else None

    def set_selection(self, selection: ProcessSelection) -> None:
        self._selection = selection

    def _selected(self, pid: int, name: Callable[[], str | None], cmdline: Callable[[], str]) -> bool:
        """Whether a process counts; its name and command line are read only if the selection needs them."""
        if pid == self._exclude:
            return False
        selection = self._selection
        if not selection.names and not selection.cmdline_patterns:
            return True
        if selection.names and name() in selection.names:
            return True
        return bool(selection.cmdline_patterns) and any(p.search(cmdline()) for p in selection.cmdline_patterns)

    def _scan_psutil(self) -> Iterator[tuple[tuple[int, float], float, float]]:
        attrs = ["pid", "name", "cmdline", "cpu_times", "memory_info", "create_time"]
        for process in self._iterate(attrs=attrs, ad_value=None):
            info = process.info
            if info.get("cpu_times") is None or not self._selected(
                    info["pid"], lambda i=info: i.get("name"), lambda i=info: " ".join(i.get("cmdline") or ())):
                continue
            times = info["cpu_times"]
            memory = info.get("memory_info")
            yield (info["pid"], info.get("create_time") or 0.0), times.user + times.system, \
                memory.rss if memory is not None else 0.0

    def _scan_proc(self) -> Iterator[tuple[tuple[int, float], float, float]]:
        for entry in os.scandir(self._proc):
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "stat"), "rb") as handle:
                    stat = parse_stat(handle.read().decode(errors="replace"), self._ticks, self._page)
            except OSError:  # the process ended between listing and reading
                continue
            if stat is None or stat.kernel_thread:
                continue
            if self._selected(stat.pid, lambda s=stat, p=entry.path: self._full_name(s, p),
                              lambda p=entry.path: self._cmdline(p)):
                yield (stat.pid, stat.start_ticks), stat.cpu_seconds, stat.rss_bytes

    def _full_name(self, stat: ProcStat, path: str) -> str:
        """The name as psutil gives it: the kernel's, or the command's base name where that is truncated."""
        if len(stat.name) < COMM_LENGTH:
            return stat.name
        first = self._cmdline(path).split(" ", 1)[0]
        base = os.path.basename(first)
        return base if base.startswith(stat.name) else stat.name

    @staticmethod
    def _cmdline(path: str) -> str:
        try:
            with open(os.path.join(path, "cmdline"), "rb") as handle:
                raw = handle.read(65536)
        except OSError:
            return ""
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")

    def sample(self) -> ProcessSample:
        try:
            current: dict[tuple[int, float], float] = {}
            rss = 0.0
            for key, cpu_seconds, resident in (self._scan_psutil() if self._iterate else self._scan_proc()):
                current[key] = cpu_seconds
                rss += resident
        except (OSError, *_psutil_errors()) as exc:
            return ProcessSample(ok=False, error=f"{type(exc).__name__}: {exc}")
        delta = 0.0
        if self._sampled_once:
            for key, seconds in current.items():
                # A process new since the last sample used all its CPU time since then.
                delta += max(seconds - self._cpu.get(key, 0.0), 0.0)
        self._cpu = current
        self._sampled_once = True
        self._total += delta
        if not current:
            # Nothing measured is not a measurement of nothing: a hidden /proc (hidepid), a pod without
            # shareProcessNamespace, or a selection that matches no process. The total stays where it was.
            return ProcessSample(False, 0, self._total, 0.0, 0.0, error=NO_PROCESS)
        return ProcessSample(True, len(current), self._total, delta, rss)
