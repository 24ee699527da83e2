"""The pod's volumes' sizes, read with statfs of their mount paths (a size given in the config needs no read).

A volume whose size cannot be read is reported by name and reason, and the
others are read as usual; the books keep its last known size or leave it
unpriced. A hung network filesystem holds only this source's worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ml_cost_exporter.config.bill import Volume

log = logging.getLogger(__name__)
StatFs = Callable[[str], os.statvfs_result]
# Block volumes top out at 64 TiB at every provider; a network filesystem such as EFS reports exabytes.
# A size above this is not a volume priced per GiB-month: refused rather than priced.
MAX_VOLUME_BYTES = float(1 << 50)  # 1 PiB


@dataclass(frozen=True)
class VolumeReading:
    """Sizes read at one tick, in bytes, and the volumes that could not be read, with why."""

    sizes_bytes: dict[str, float] = field(default_factory=dict)
    failures: tuple[tuple[str, str], ...] = ()  # (volume name, reason)

    @property
    def ok(self) -> bool:
        return not self.failures


def filesystem_size_bytes(stat: os.statvfs_result) -> float:
    """The filesystem's total size: blocks x fragment size (what `df` shows as Size)."""
    return float(stat.f_blocks) * float(stat.f_frsize)


class VolumeSource:
    """Reads the size of each configured volume that names a path, below an injected root."""

    name = "volumes"

    def __init__(self, volumes: Sequence[Volume], root: Path = Path("/"), statfs: StatFs = os.statvfs) -> None:
        self._volumes = tuple(v for v in volumes if v.path is not None)
        self._root = root
        self._statfs = statfs
        self._reported: set[tuple[str, str]] = set()
        self.last_reading = VolumeReading()

    def _path(self, volume: Volume) -> str:
        return str(self._root / volume.path.lstrip("/"))

    def sample(self) -> VolumeReading:
        sizes: dict[str, float] = {}
        failures = []
        for volume in self._volumes:
            path = self._path(volume)
            try:
                size = filesystem_size_bytes(self._statfs(path))
            except OSError as exc:
                failures.append(self._fail(volume, "size_unreadable", f"cannot statfs {path}: "
                                                                     f"{exc.strerror or exc}"))
                continue
            if size <= 0:
                failures.append(self._fail(volume, "size_unreadable", f"{path} reports a size of 0"))
                continue
            if size > MAX_VOLUME_BYTES:
                failures.append(self._fail(volume, "implausible", f"{path} reports {size:.3g} bytes, more than "
                                           "any block volume (a network filesystem?); set size_gib"))
                continue
            sizes[volume.name] = size
        self.last_reading = VolumeReading(sizes, tuple(failures))
        return self.last_reading

    def _fail(self, volume: Volume, reason: str, detail: str) -> tuple[str, str]:
        """One warning per volume and reason until it reads again; the failure is counted every tick."""
        if (volume.name, reason) not in self._reported:
            self._reported.add((volume.name, reason))
            log.warning('volume "%s": %s; its storage cost is unpriced until it reads again', volume.name, detail)
        return (volume.name, reason)

    def close(self) -> None:
        """Nothing to release; present so the sampler can treat every source alike."""
