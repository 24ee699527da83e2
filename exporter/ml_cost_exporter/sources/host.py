"""Where the container's host views are: sysfs, procfs and the root its volume paths are under (injected in tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.sources.volumes import StatFs


@dataclass(frozen=True)
class HostPaths:
    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    root: Path = Path("/")  # volume paths in the config are read below this
    statfs: StatFs = os.statvfs


DEFAULT_HOST_PATHS = HostPaths()
