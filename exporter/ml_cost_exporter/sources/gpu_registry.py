"""The GPU-source interface and its registry: `gpu.source: <name>` picks a factory registered under that name.

Adding a GPU source is one module that implements `GpuSource` and decorates its
factory with `register_gpu_source`, plus its module name in GPU_SOURCE_MODULES.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from ml_cost_exporter.config.schema import Config

if TYPE_CHECKING:
    from ml_cost_exporter.sources.nvml import GpuSample

GPU_SOURCE_MODULES = ("ml_cost_exporter.sources.nvml", "ml_cost_exporter.sources.dcgm")


class GpuSource(Protocol):
    """What the exporter needs of a GPU source."""

    name: str  # in mlcost_exporter_source_up{source}
    # True where a source that cannot be read means the container runtime hides the GPUs (NVML), not an outage.
    hidden_when_unreachable: bool

    def sample(self) -> GpuSample: ...
    def set_visible(self, configured: tuple[str, ...] | None) -> None: ...
    def parse_counts(self) -> tuple[float, float] | None: ...  # (dropped series, invalid samples), text sources
    def mismatch_hint(self) -> str: ...
    def close(self) -> None: ...


GpuSourceFactory = Callable[[Config, Mapping[str, str] | None, Callable[[], float]], GpuSource]
_FACTORIES: dict[str, GpuSourceFactory] = {}


def register_gpu_source(name: str) -> Callable[[GpuSourceFactory], GpuSourceFactory]:
    """Make a factory available as `gpu.source: <name>`."""
    def register(factory: GpuSourceFactory) -> GpuSourceFactory:
        _FACTORIES[name] = factory
        return factory
    return register


def registered_gpu_sources() -> tuple[str, ...]:
    for module in GPU_SOURCE_MODULES:
        importlib.import_module(module)
    return tuple(sorted(_FACTORIES))


def make_gpu_source(config: Config, environ: Mapping[str, str] | None,
                    monotonic: Callable[[], float] = time.monotonic) -> GpuSource:
    """The GPU source `gpu.source` names, set up from the config."""
    registered_gpu_sources()
    return _FACTORIES[config.gpu.source](config, environ, monotonic)
