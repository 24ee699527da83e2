"""Writes the catalog overlay: imported prices on the catalog's instance shapes, validated before it lands."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ml_cost_exporter.config.catalog import CLOUD_PROVIDERS, OVERLAY_VERSION, Catalog, Instance, apply_overlay
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.pricefiles.common import Price, PriceFileError

HEADER = """\
# Catalog overlay for ml-cost-exporter (pricing.catalog_file), written by
# `mlcost pricing update` from the providers' price files. Each entry replaces
# the embedded catalog's instance of that name; shapes (vCPUs, memory, GPUs)
# are the catalog's, prices and their source and month are the price file's.
# Regenerate rather than edit; hand-added instance types are kept only if they
# belong to a provider that is not being updated.
"""


def _entry(instance: Instance) -> dict[str, Any]:
    entry: dict[str, Any] = {"hourly_usd": instance.hourly_usd}
    if instance.gpu_type:
        entry.update(gpu_type=instance.gpu_type, gpus=instance.gpus)
    entry.update(vcpus=instance.vcpus, memory_gib=instance.memory_gib, source=instance.source, as_of=instance.as_of)
    return entry


def imported_entries(base: Catalog, provider: str, prices: list[Price]) -> dict[str, dict[str, Any]]:
    """Overlay entries for imported prices: the base catalog's shape with the price file's price."""
    instances = base.providers[provider].instances
    entries = {}
    for price in prices:
        shape = instances[price.instance]
        entries[price.instance] = _entry(Instance(price.instance, price.hourly_usd, shape.vcpus, shape.memory_gib,
                                                  shape.gpu_type, shape.gpus, price.source, price.as_of))
    return entries


def existing_entries(path: Path, base: Catalog) -> dict[str, dict[str, dict[str, Any]]]:
    """The providers' entries of an overlay already at `path` (validated first), or none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"{path}: cannot read the existing overlay: {exc}") from None
    try:
        apply_overlay(base, text, str(path))
    except ConfigError as exc:
        raise PriceFileError(f"the existing overlay is invalid, fix or remove it: {exc}") from None
    providers = (yaml.safe_load(text) or {}).get("providers") or {}
    return {name: dict(section.get("instances") or {}) for name, section in providers.items()}


def _scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def render(providers: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The overlay's YAML text: one flow mapping per instance, providers in catalog order."""
    lines = [HEADER, f"overlay_version: {OVERLAY_VERSION}", "providers:"]
    for provider in (p for p in CLOUD_PROVIDERS if providers.get(p)):
        lines += [f"  {provider}:", "    instances:"]
        for name, entry in sorted(providers[provider].items()):
            fields = ", ".join(f"{key}: {_scalar(value)}" for key, value in entry.items())
            lines.append(f"      {json.dumps(name)}: {{{fields}}}")
    return "\n".join(lines) + "\n"


def write_overlay(path: Path, text: str, base: Catalog) -> None:
    """Validate `text` exactly as the exporter will, then replace `path` atomically (write, fsync, rename)."""
    try:
        apply_overlay(base, text, str(path))
    except ConfigError as exc:  # a bug here, never the user's: what we render must load
        raise PriceFileError(f"the overlay written would not load: {exc}") from None
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
