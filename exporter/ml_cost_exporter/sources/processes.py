"""CPU and memory of the serving processes, through psutil.

In Kubernetes the pod shares one process namespace (shareProcessNamespace), so
the sidecar sees the inference server's processes. With no selection every
process but the exporter itself counts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

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


class ProcessSource:
    def __init__(self, selection: ProcessSelection, exclude_pid: int | None = None,
                 iterate: Callable[..., object] = psutil.process_iter) -> None:
        self._selection = selection
        self._exclude = os.getpid() if exclude_pid is None else exclude_pid
        self._iterate = iterate
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
                environ = psutil.Process(pid).environ()
            except (psutil.Error, OSError):
                continue
            found = visible_devices(None, environ)
            if found is None:
                return None  # a serving process sees every GPU
            devices.extend(d for d in found if d not in devices)
        return tuple(devices) if devices else None

    def set_selection(self, selection: ProcessSelection) -> None:
        self._selection = selection

    def _selected(self, info: dict) -> bool:
        if info["pid"] == self._exclude:
            return False
        selection = self._selection
        if not selection.names and not selection.cmdline_patterns:
            return True
        if info.get("name") in selection.names:
            return True
        cmdline = " ".join(info.get("cmdline") or ())
        return any(p.search(cmdline) for p in selection.cmdline_patterns)

    def sample(self) -> ProcessSample:
        try:
            current: dict[tuple[int, float], float] = {}
            rss = 0.0
            attrs = ["pid", "name", "cmdline", "cpu_times", "memory_info", "create_time"]
            for process in self._iterate(attrs=attrs, ad_value=None):
                info = process.info
                if info.get("cpu_times") is None or not self._selected(info):
                    continue
                times = info["cpu_times"]
                current[(info["pid"], info.get("create_time") or 0.0)] = times.user + times.system
                if info.get("memory_info") is not None:
                    rss += info["memory_info"].rss
        except (psutil.Error, OSError) as exc:
            return ProcessSample(ok=False, error=f"{type(exc).__name__}: {exc}")
        delta = 0.0
        if self._sampled_once:
            for key, seconds in current.items():
                # A process new since the last sample used all its CPU time since then.
                delta += max(seconds - self._cpu.get(key, 0.0), 0.0)
        self._cpu = current
        self._sampled_once = True
        self._total += delta
        return ProcessSample(True, len(current), self._total, delta, rss)
