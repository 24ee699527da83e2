"""The rest of the bill beside compute: storage classes, egress prices and hosted-API list prices (catalog),
and the pod's volumes and default egress destination (config).

Parsed as strictly as the rest of the catalog and config: every price names its
source and month, unknown keys are errors with their line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ml_cost_exporter.config.located import Located, Section

DESTINATIONS = ("same_zone", "cross_zone", "cross_region", "internet")
HOSTED_RATES = ("input", "output", "cached_input")
_AS_OF = re.compile(r"(19|20)\d\d-(0[1-9]|1[0-2])")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class StorageClass:
    """A block storage class's list price per GiB-month (0 for local disks included in the instance price)."""

    name: str
    usd_per_gib_month: float
    source: str
    as_of: str
    note: str | None = None


@dataclass(frozen=True)
class EgressTier:
    up_to_gib: float | None  # the tier's upper bound of monthly internet egress; None: no bound
    usd_per_gib: float


@dataclass(frozen=True)
class EgressPrices:
    """Per-GiB prices of traffic leaving the pod, by destination; internet egress is tiered by monthly volume."""

    same_zone_usd_per_gib: float
    cross_zone_usd_per_gib: float
    cross_region_usd_per_gib: float
    internet_tiers: tuple[EgressTier, ...]
    source: str
    as_of: str

    def usd_per_gib(self, destination: str, monthly_internet_gib: float) -> float:
        """The price of one more GiB to `destination`, the internet's at the tier the monthly volume reaches."""
        if destination != "internet":
            return getattr(self, f"{destination}_usd_per_gib")
        for tier in self.internet_tiers:
            if tier.up_to_gib is None or monthly_internet_gib < tier.up_to_gib:
                return tier.usd_per_gib
        return self.internet_tiers[-1].usd_per_gib


@dataclass(frozen=True)
class HostedModel:
    """A hosted API model's list prices per 1M tokens."""

    name: str
    provider: str
    input_usd_per_1m: float
    output_usd_per_1m: float
    cached_input_usd_per_1m: float | None
    source: str
    as_of: str


def as_of(section: Section, key: str = "as_of", default: str | None = None) -> str:
    value = section.string(key, default, required=default is None)
    if not _AS_OF.fullmatch(value):
        raise (section.raw(key) or section.located).error(f'"{value}" is not a month like "2025-06"')
    return value


def parse_storage_classes(section: Section | None) -> Mapping[str, StorageClass]:
    """A provider's `storage_classes:` (source, as_of, classes); empty where the provider lists none."""
    if section is None:
        return MappingProxyType({})
    source = section.string("source", required=True)
    month = as_of(section)
    classes = {}
    for name, located in section.section("classes", required=True):
        entry = Section(located)
        classes[name] = StorageClass(
            name=name,
            usd_per_gib_month=entry.number("usd_per_gib_month", required=True, minimum=0),
            source=entry.string("source", source),
            as_of=as_of(entry, "as_of", month),
            note=entry.string("note"),
        )
        entry.finish()
    section.finish()
    return MappingProxyType(classes)


def _tiers(section: Section) -> tuple[EgressTier, ...]:
    items = section.items("internet_tiers")
    if not items:
        raise section.missing("internet_tiers", "must list at least one tier")
    tiers = []
    for position, item in enumerate(items):
        entry = Section(item)
        tier = EgressTier(entry.number("up_to_gib", minimum=0, exclusive_minimum=True),
                          entry.number("usd_per_gib", required=True, minimum=0))
        entry.finish()
        last = position == len(items) - 1
        if (tier.up_to_gib is None) != last:
            raise item.error("every tier but the last needs up_to_gib; the last has none")
        if tiers and tier.up_to_gib is not None and tier.up_to_gib <= tiers[-1].up_to_gib:
            raise item.error("tiers must be listed by increasing up_to_gib")
        tiers.append(tier)
    return tuple(tiers)


def parse_egress(section: Section | None) -> EgressPrices | None:
    """A provider's `egress:` prices; None where the provider lists none."""
    if section is None:
        return None
    prices = EgressPrices(
        same_zone_usd_per_gib=section.number("same_zone_usd_per_gib", required=True, minimum=0),
        cross_zone_usd_per_gib=section.number("cross_zone_usd_per_gib", required=True, minimum=0),
        cross_region_usd_per_gib=section.number("cross_region_usd_per_gib", required=True, minimum=0),
        internet_tiers=_tiers(section),
        source=section.string("source", required=True),
        as_of=as_of(section),
    )
    section.finish()
    return prices


def parse_hosted_models(section: Section | None) -> Mapping[str, HostedModel]:
    """The catalog's `hosted_models:`: each model's provider, prices per 1M tokens, source and month."""
    if section is None:
        return MappingProxyType({})
    models = {}
    for name, located in section:
        entry = Section(located)
        models[name] = HostedModel(
            name=name,
            provider=entry.string("provider", required=True),
            input_usd_per_1m=entry.number("input_usd_per_1m", required=True, minimum=0, exclusive_minimum=True),
            output_usd_per_1m=entry.number("output_usd_per_1m", required=True, minimum=0, exclusive_minimum=True),
            cached_input_usd_per_1m=entry.number("cached_input_usd_per_1m", minimum=0),
            source=entry.string("source", required=True),
            as_of=as_of(entry),
        )
        entry.finish()
    return MappingProxyType(models)


# --- the pod's side: its volumes and where its traffic goes -------------------------------------

@dataclass(frozen=True)
class Volume:
    """One volume the pod pays for: its class, and its size given or read (statfs of `path`)."""

    name: str
    storage_class: str
    path: str | None  # a mount path inside the container, its size read each tick
    size_gib: float | None  # the provisioned size, when given
    usd_per_gib_month: float | None  # a price that replaces the class's (on-prem, a negotiated rate)


@dataclass(frozen=True)
class Network:
    """How the pod's egress is priced: one default destination class, the account's monthly internet volume."""

    destination: str
    monthly_internet_gib: float  # picks the internet tier; the tiers apply to the account's total
    usd_per_gib: float | None  # a price that replaces the catalog's


def _volume(item: Located) -> Volume:
    section = Section(item)
    name = section.string("name", required=True)
    if not _VOLUME_NAME.fullmatch(name):
        raise section.raw("name").error(f'volume name must be letters, digits and "_.-", got "{name}"')
    volume = Volume(
        name=name,
        storage_class=section.string("class", required=True),
        path=section.string("path"),
        size_gib=section.number("size_gib", minimum=0, exclusive_minimum=True),
        usd_per_gib_month=section.number("usd_per_gib_month", minimum=0),
    )
    if (volume.path is None) == (volume.size_gib is None):
        raise item.error("give a volume either path (its size is read) or size_gib, exactly one")
    section.finish()
    return volume


def parse_volumes(section: Section | None) -> tuple[Volume, ...]:
    """The config's `storage:` section: the volumes whose GiB-months are charged."""
    if section is None:
        return ()
    items = section.items("volumes")
    volumes = tuple(_volume(item) for item in items)
    names = [v.name for v in volumes]
    for item, volume in zip(items, volumes, strict=True):
        if names.count(volume.name) > 1:
            raise item.error(f'volume "{volume.name}" is listed twice')
    section.finish()
    return volumes


def parse_network(section: Section | None) -> Network | None:
    """The config's `network:` section; None leaves egress unpriced (its bytes are still counted)."""
    if section is None:
        return None
    network = Network(
        destination=section.string("destination", "internet", choices=DESTINATIONS),
        monthly_internet_gib=section.number("monthly_internet_gib", 0.0, minimum=0),
        usd_per_gib=section.number("usd_per_gib", minimum=0),
    )
    section.finish()
    return network
