"""The embedded table of grid carbon intensity by cloud region and each provider's PUE (data, one copy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Section, load_located


@dataclass(frozen=True)
class RegionIntensity:
    g_per_kwh: float  # grams CO2e per kWh drawn from the grid
    year: int
    source: str


@dataclass(frozen=True)
class ProviderCarbon:
    default_region: str
    pue: float
    regions: Mapping[str, RegionIntensity]


def parse_carbon_table(text: str, source: str) -> Mapping[str, ProviderCarbon]:
    providers = {}
    root = Section(load_located(text, source))
    for name, item in Section(root.raw("providers")):
        section = Section(item)
        regions = {}
        for region, entry in Section(section.raw("regions")):
            fields = Section(entry)
            regions[region] = RegionIntensity(
                g_per_kwh=fields.number("g_per_kwh", required=True, minimum=0, maximum=2000),
                year=int(fields.number("year", required=True, minimum=2000, maximum=2100)),
                source=fields.string("source", required=True))
            fields.finish()
        default = section.string("default_region", required=True)
        if default not in regions:
            raise section.raw("default_region").error(f'"{default}" is not among the regions listed')
        providers[name] = ProviderCarbon(default, section.number("pue", required=True, minimum=1, maximum=3),
                                         MappingProxyType(regions))
        section.string("pue_source", required=True)
        section.finish()
    root.finish()
    return MappingProxyType(providers)


@cache
def embedded_carbon_table() -> Mapping[str, ProviderCarbon]:
    text = resources.files("ml_cost_exporter.config").joinpath("carbon.yaml").read_text()
    try:
        return parse_carbon_table(text, "carbon.yaml")
    except ConfigError as exc:
        raise RuntimeError(f"embedded carbon table is invalid: {exc}") from exc
