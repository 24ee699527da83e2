"""The pricing config: one YAML schema parsed once into typed, immutable objects.

Nothing downstream reads raw YAML. Every error names file, line, key path and
what was expected; unknown keys are errors with a did-you-mean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse

from ml_cost_exporter.config.bill import Network, Volume, parse_network, parse_volumes
from ml_cost_exporter.config.carbon import embedded_carbon_table
from ml_cost_exporter.config.catalog import (
    CLOUD_PROVIDERS,
    PURCHASE_OPTIONS,
    Catalog,
    OnPremCosts,
    apply_overlay,
    embedded_catalog,
)
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.httpconfig import parse_http_settings
from ml_cost_exporter.config.located import Located, Section, check_number, load_located, read_text, suggest
from ml_cost_exporter.config.presets import QUANTITIES, Preset, embedded_presets, parse_preset
from ml_cost_exporter.config.tokens import TOKEN_KINDS, Tenants, TokenWeights, parse_tenants, parse_weights
from ml_cost_exporter.config.units import MIG_PROFILE
from ml_cost_exporter.httpclient import HttpSettings

PROVIDERS = (*CLOUD_PROVIDERS, "onprem")
WORKLOADS = ("inference", "training")
PERIODS = ("month", "day", "week", "quarter", "job")  # job: a training job's whole life
ATTRIBUTIONS = ("requests", "compute_time")
GPU_SOURCES = ("nvml", "dcgm")
OVERRIDE_BASES = ("paid", "on_demand")  # paid: what you pay, never discounted; on_demand: list prices, discounted
MAX_CATALOG_FILE_BYTES = 8 * 1024 * 1024
DEFAULT_THRESHOLDS = (0.8, 0.9, 1.0, 1.1)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]*")


@dataclass(frozen=True)
class OnPrem(OnPremCosts):
    gpu_purchase_usd: float | None  # None: the catalog's price for the GPU type


@dataclass(frozen=True)
class Pricing:
    provider: str
    purchase_option: str
    price_ratio: float | None  # fraction of the on-demand price paid; None: the catalog's for the option
    gpu_hourly_usd: float | None
    vcpu_hourly_usd: float | None
    memory_gib_hourly_usd: float | None
    fixed_hourly_usd: float
    onprem: OnPrem
    overrides_basis: str = "paid"  # whether the purchase option's fraction applies to the overrides
    catalog_file: str | None = None  # the catalog overlay loaded on top of the embedded catalog


@dataclass(frozen=True)
class GpuAllocation:
    type: str | None  # catalog id; None: detected from the GPU's NVML name
    count: float | None  # None: the GPUs this pod can see
    mig_profile: str | None
    mig_fraction: float | None  # compute slices of the profile / slices of the GPU


@dataclass(frozen=True)
class Allocation:
    gpu: GpuAllocation | None
    instance_type: str | None
    instance_share: float
    vcpus: float | None  # None: the cgroup's CPU limit, else the host's cores
    memory_gib: float | None  # None: the cgroup's memory limit, else the host's memory
    visible_devices: tuple[str, ...] | None  # None: NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES
    devices_from_processes: bool = False  # take the GPUs from the serving processes' environment


@dataclass(frozen=True)
class ServerConfig:
    preset: Preset
    url: str
    model: str  # the model's label value in the server's metrics
    version: str | None  # version label value to keep; None: all versions
    http: HttpSettings = field(default_factory=HttpSettings)  # credentials, TLS, redirects


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    workload: str
    server: ServerConfig | None
    target_cost_per_1k_usd: float | None
    labels: Mapping[str, str]
    expected_epochs: float | None = None  # a training job's total, when known before the job exports one
    expected_samples: float | None = None
    quality_higher_is_better: bool = True  # the server's `quality` figure: accuracy (higher) or error rate

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


@dataclass(frozen=True)
class Selector:
    models: tuple[str, ...]
    labels: Mapping[str, str]
    tenants: tuple[str, ...] = ()  # a tenant budget counts only these tenants' share of the models' cost
    hosted_models: tuple[str, ...] = ()  # API spend read from a gateway (hosted_spend) on these models; "*": all

    def matches(self, model: Model) -> bool:
        if self.models and model.name not in self.models:
            return False
        return all(model.labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class Budget:
    name: str
    amount_usd: float
    period: str
    selector: Selector
    thresholds: tuple[float, ...]


@dataclass(frozen=True)
class ProcessSelection:
    names: tuple[str, ...]
    cmdline_patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Collection:
    interval_seconds: float
    cost_window_seconds: float
    server_timeout_seconds: float
    max_series_per_source: int
    max_body_bytes: int
    max_counter_value: float = 1e15  # a counter sample above it is refused
    # Overrides of the largest plausible increase per second, by quantity (sources/plausible.py has the rest).
    max_increase_per_second: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Energy:
    """How measured GPU energy turns into carbon: the grid's intensity and the facility's overhead."""

    carbon_intensity_g_per_kwh: float | None  # None: unknown, carbon series stay absent
    pue: float
    region: str | None
    source: str


@dataclass(frozen=True)
class DcgmSelection:
    """Where the node's dcgm-exporter is and which of its GPUs are this pod's."""

    url: str  # may hold ${VAR} placeholders, filled from the exporter's environment (e.g. ${NODE_IP})
    pod: str | None  # None: the POD_NAME environment variable
    namespace: str | None  # None: the POD_NAMESPACE environment variable
    uuids: tuple[str, ...] | None  # select by GPU UUID (or index) instead of by pod
    http: HttpSettings = field(default_factory=HttpSettings)  # credentials, TLS, redirects


@dataclass(frozen=True)
class GpuSourceConfig:
    source: str = "nvml"  # nvml | dcgm
    dcgm: DcgmSelection | None = None  # set when source is dcgm


@dataclass(frozen=True)
class Config:
    pricing: Pricing
    allocation: Allocation
    models: tuple[Model, ...]
    attribution: str
    budgets: tuple[Budget, ...]
    processes: ProcessSelection
    collection: Collection
    source: str = "<embedded defaults>"
    energy: Energy = Energy(None, 1.0, None, "")
    catalog: Catalog = field(default_factory=embedded_catalog, repr=False, compare=False)
    token_weights: TokenWeights = field(default_factory=TokenWeights)
    tenants: Tenants | None = None
    gpu: GpuSourceConfig = GpuSourceConfig()
    volumes: tuple[Volume, ...] = ()  # storage.volumes: priced per GiB-month by class
    network: Network | None = None  # None: egress bytes counted, not priced


DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_VERSION = "latest"


def _pricing(section: Section | None, catalog: Catalog) -> Pricing:
    """The pricing section; its catalog_file is only named here and loaded by `_with_overlay`."""
    section = section or Section(Located({}, "", 0, "pricing"))
    defaults = catalog.onprem
    onprem_section = section.section("onprem") or Section(Located({}, "", 0, "pricing.onprem"))
    onprem = OnPrem(
        gpu_purchase_usd=onprem_section.number("gpu_purchase_usd", minimum=0, exclusive_minimum=True),
        amortization_years=onprem_section.number("amortization_years", defaults.amortization_years,
                                                 minimum=0, exclusive_minimum=True),
        power_usd_per_kwh=onprem_section.number("power_usd_per_kwh", defaults.power_usd_per_kwh, minimum=0),
        pue=onprem_section.number("pue", defaults.pue, minimum=1, maximum=5),
        vcpu_purchase_usd=onprem_section.number("vcpu_purchase_usd", defaults.vcpu_purchase_usd, minimum=0),
        memory_gib_purchase_usd=onprem_section.number("memory_gib_purchase_usd",
                                                      defaults.memory_gib_purchase_usd, minimum=0),
    )
    onprem_section.finish()
    overrides = section.section("overrides") or Section(Located({}, "", 0, "pricing.overrides"))
    pricing = Pricing(
        provider=section.string("provider", "aws", choices=PROVIDERS),
        purchase_option=section.string("purchase_option", "on_demand", choices=PURCHASE_OPTIONS),
        price_ratio=section.number("price_ratio", minimum=0, maximum=1, exclusive_minimum=True),
        gpu_hourly_usd=overrides.number("gpu_hourly_usd", minimum=0),
        vcpu_hourly_usd=overrides.number("vcpu_hourly_usd", minimum=0),
        memory_gib_hourly_usd=overrides.number("memory_gib_hourly_usd", minimum=0),
        fixed_hourly_usd=section.number("fixed_hourly_usd", 0.0, minimum=0),
        onprem=onprem,
        overrides_basis=overrides.string("basis", "paid", choices=OVERRIDE_BASES),
        catalog_file=section.string("catalog_file"),
    )
    overrides.finish()
    section.finish()
    return pricing


def _with_overlay(section: Section | None, catalog: Catalog, base_dir: Path | None) -> Catalog:
    """The catalog with pricing.catalog_file applied; a missing or invalid overlay is a ConfigError."""
    item = section.raw("catalog_file") if section is not None else None
    if item is None:
        return catalog
    path = Path(str(item.value))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CATALOG_FILE_BYTES + 1)
    except OSError as exc:
        raise item.error(f'cannot read catalog overlay "{path}": {exc.strerror or exc}') from None
    if len(data) > MAX_CATALOG_FILE_BYTES:
        raise item.error(f'catalog overlay "{path}" is larger than {MAX_CATALOG_FILE_BYTES} bytes')
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise item.error(f'catalog overlay "{path}" is not UTF-8 text') from None
    return apply_overlay(catalog, text, str(path))


def gpu_priced(pricing: Pricing, catalog: Catalog, gpu_type: str) -> bool:
    """Whether a GPU type has a price under this pricing: owned hardware, an override, or a catalog offer.

    The one statement of the offer rule: config validation, the exporter's allocation and `mlcost` use it.
    """
    if pricing.provider not in CLOUD_PROVIDERS or pricing.gpu_hourly_usd is not None:
        return True
    return gpu_type in catalog.providers[pricing.provider].gpu_offers


def _gpu_allocation(section: Section, catalog: Catalog, pricing: Pricing) -> GpuAllocation:
    gpu_type = section.string("type")
    if gpu_type is not None:
        if gpu_type not in catalog.gpu_types:
            known = sorted(catalog.gpu_types)
            raise section.raw("type").error(
                f'unknown GPU type "{gpu_type}"{suggest(gpu_type, known)} (known: {", ".join(known)})')
        if not gpu_priced(pricing, catalog, gpu_type):
            offers = catalog.providers[pricing.provider].gpu_offers
            raise section.raw("type").error(
                f'{pricing.provider} offers no "{gpu_type}" in the catalog (it has: {", ".join(sorted(offers))}); '
                "set pricing.overrides.gpu_hourly_usd")
    count = section.number("count", minimum=0, exclusive_minimum=True)
    mig_profile = section.string("mig_profile")
    mig_fraction = None
    if mig_profile is not None:
        item = section.raw("mig_profile")
        matched = MIG_PROFILE.fullmatch(mig_profile)
        if not matched:
            raise item.error(f'"{mig_profile}" is not a MIG profile like "1g.10gb" or "3g.40gb"')
        if gpu_type is None:
            raise item.error("a MIG profile needs allocation.gpu.type, to know the parent GPU's slices")
        slices = catalog.gpu_types[gpu_type].mig_slices
        if slices == 0:
            raise item.error(f'GPU type "{gpu_type}" does not support MIG')
        if int(matched.group(1)) > slices:
            raise item.error(f'"{mig_profile}" uses {matched.group(1)} slices; "{gpu_type}" has {slices}')
        mig_fraction = int(matched.group(1)) / slices
    section.finish()
    return GpuAllocation(gpu_type, count, mig_profile, mig_fraction)


def _allocation(section: Section | None, catalog: Catalog, pricing: Pricing) -> Allocation:
    section = section or Section(Located({}, "", 0, "allocation"))
    gpu_section = section.section("gpu")
    gpu = _gpu_allocation(gpu_section, catalog, pricing) if gpu_section else None
    instance_type, share = None, 1.0
    instance_section = section.section("instance")
    if instance_section is not None:
        if gpu is not None:
            raise instance_section.located.error("give either allocation.instance or allocation.gpu, not both")
        if pricing.provider not in CLOUD_PROVIDERS:
            raise instance_section.located.error("instance types are priced only for aws, gcp and azure")
        instance_type = instance_section.string("type", required=True)
        known = catalog.providers[pricing.provider].instances
        if instance_type not in known:
            raise instance_section.raw("type").error(
                f'unknown {pricing.provider} instance type "{instance_type}"{suggest(instance_type, list(known))} '
                f'(known: {", ".join(sorted(known))})')
        share = instance_section.number("share", 1.0, minimum=0, maximum=1, exclusive_minimum=True)
        instance_section.finish()
    visible = section.string("visible_devices")
    allocation = Allocation(
        gpu=gpu,
        instance_type=instance_type,
        instance_share=share,
        vcpus=section.number("vcpus", minimum=0, exclusive_minimum=True),
        memory_gib=section.number("memory_gib", minimum=0, exclusive_minimum=True),
        visible_devices=tuple(v.strip() for v in visible.split(",") if v.strip()) if visible else None,
        devices_from_processes=section.boolean("devices_from_processes", False),
    )
    if allocation.devices_from_processes and allocation.visible_devices is not None:
        raise section.raw("devices_from_processes").error("give either visible_devices or devices_from_processes")
    if instance_type is not None and (allocation.vcpus or allocation.memory_gib):
        raise section.located.error("vcpus and memory_gib come from the instance type; do not set them too")
    section.finish()
    return allocation


def _server(section: Section, model_name: str) -> ServerConfig:
    presets = embedded_presets()
    preset_name = section.string("preset", required=True, choices=(*presets, "generic"))
    url = section.string("url", required=True)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise section.raw("url").error(f'"{url}" is not an http:// or https:// URL')
    base = presets.get(preset_name)
    preset = parse_preset(preset_name, section, base)  # generic needs its own `requests`; others may override
    server = ServerConfig(
        preset=preset,
        url=url,
        model=section.string("model", model_name),
        version=section.string("version"),
        http=parse_http_settings(section),
    )
    if server.version is not None and preset.version_label is None:
        raise section.raw("version").error(f'preset "{preset_name}" has no version label; set version_label first')
    section.finish()
    return server


def _name(item: Located | None, what: str) -> str:
    value = item.value if item is not None else None
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise item.error(f'{what} must be a non-empty name of letters, digits and "_.:/@+-", got {value!r}')
    return value


def _model(item: Located) -> Model:
    section = Section(item)
    name = _name(section.raw("name"), "name") if section.has("name") else None
    if name is None:
        raise section.missing("name")
    version_item = section.raw("version")
    version = str(version_item.value) if version_item is not None else DEFAULT_MODEL_VERSION
    server_section = section.section("server")
    labels = section.string_map("labels")
    for key in labels:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
            raise section.raw("labels").error(f'"{key}" is not a valid label name')
    model = Model(
        name=name,
        version=version,
        workload=section.string("workload", "inference", choices=WORKLOADS),
        server=_server(server_section, name) if server_section else None,
        target_cost_per_1k_usd=section.number("target_cost_per_1k_usd", minimum=0, exclusive_minimum=True),
        labels=MappingProxyType(labels),
        expected_epochs=section.number("expected_epochs", minimum=0, exclusive_minimum=True),
        expected_samples=section.number("expected_samples", minimum=0, exclusive_minimum=True),
        quality_higher_is_better=section.boolean("quality_higher_is_better", True),
    )
    section.finish()
    return model


def _budget(item: Located, models: tuple[Model, ...]) -> Budget:
    section = Section(item)
    name = _name(section.raw("name"), "name") if section.has("name") else None
    if name is None:
        raise section.missing("name")
    selector_section = section.section("selector") or Section(Located({}, "", 0, f"{item.path}.selector"))
    model_names = tuple(str(m.value) for m in selector_section.items("models"))
    known_models = sorted({m.name for m in models})
    for located_model in selector_section.items("models"):
        if str(located_model.value) not in known_models:
            raise located_model.error(f'no model named "{located_model.value}"'
                                      f'{suggest(str(located_model.value), known_models)}')
    labels = selector_section.string_map("labels")
    tenants = tuple(str(t.value) for t in selector_section.items("tenants"))
    hosted = tuple(str(t.value) for t in selector_section.items("hosted_models"))
    for shorthand in ("team", "project", "env"):
        value = selector_section.string(shorthand)
        if value is not None:
            labels[shorthand] = value
    selector_section.finish()
    thresholds_items = section.items("thresholds")
    thresholds = tuple(sorted({_threshold(t) for t in thresholds_items})) if thresholds_items else DEFAULT_THRESHOLDS
    budget = Budget(
        name=name,
        amount_usd=section.number("amount_usd", required=True, minimum=0, exclusive_minimum=True),
        period=section.string("period", "month", choices=PERIODS),
        selector=Selector(model_names, MappingProxyType(labels), tenants, hosted),
        thresholds=thresholds,
    )
    section.finish()
    return budget


def _threshold(item: Located) -> float:
    return check_number(item, minimum=0, maximum=10, exclusive_minimum=True)


def _processes(section: Section | None) -> ProcessSelection:
    if section is None:
        return ProcessSelection((), ())
    patterns = []
    for item in section.items("cmdline_patterns"):
        try:
            patterns.append(re.compile(str(item.value)))
        except re.error as exc:
            raise item.error(f"invalid regular expression: {exc}") from None
    selection = ProcessSelection(tuple(str(n.value) for n in section.items("names")), tuple(patterns))
    section.finish()
    return selection


def _collection(section: Section | None) -> Collection:
    section = section or Section(Located({}, "", 0, "collection"))
    collection = Collection(
        interval_seconds=section.number("interval_seconds", 15.0, minimum=0.05, maximum=3600),
        cost_window_seconds=section.number("cost_window_seconds", 300.0, minimum=1, maximum=86400),
        server_timeout_seconds=section.number("server_timeout_seconds", 3.0, minimum=0.05, maximum=60),
        max_series_per_source=int(section.number("max_series_per_source", 10000, minimum=1)),
        max_body_bytes=int(section.number("max_body_bytes", 16 * 1024 * 1024, minimum=1024)),
        max_counter_value=section.number("max_counter_value", 1e15, minimum=1),
        max_increase_per_second=_increase_limits(section.section("max_increase_per_second")),
    )
    if collection.cost_window_seconds < collection.interval_seconds:
        raise section.located.error("cost_window_seconds must be at least interval_seconds")
    section.finish()
    return collection


def _increase_limits(section: Section | None) -> Mapping[str, float]:
    """Per-quantity overrides of the plausible increase per second; a quantity no source counts is an error."""
    if section is None:
        return MappingProxyType({})
    known = (*QUANTITIES, *TOKEN_KINDS)
    limits = {}
    for name in section.located.value:
        if name not in known:
            raise section.raw(name).error(f'unknown quantity "{name}"{suggest(name, known)}')
        limits[name] = section.number(name, minimum=0, exclusive_minimum=True)
    section.finish()
    return MappingProxyType(limits)


def _energy(section: Section | None, pricing: Pricing) -> Energy:
    """Carbon intensity and PUE: configured, else the embedded table's for the provider's region."""
    section = section or Section(Located({}, "", 0, "energy"))
    intensity = section.number("carbon_intensity_g_per_kwh", minimum=0, maximum=2000)
    pue = section.number("pue", minimum=1, maximum=3)
    region = section.string("region")
    source = "pricing config" if intensity is not None else ""
    table = embedded_carbon_table().get(pricing.provider)
    if table is not None:
        if region is not None and region not in table.regions and intensity is None:
            raise section.raw("region").error(
                f'no carbon intensity known for {pricing.provider} region "{region}"'
                f"{suggest(region, list(table.regions))}; set energy.carbon_intensity_g_per_kwh")
        if intensity is None:
            entry = table.regions[region or table.default_region]
            intensity, source = entry.g_per_kwh, f"{entry.source}, {entry.year}"
        pue = pue if pue is not None else table.pue
    elif pue is None:
        pue = pricing.onprem.pue
    section.finish()
    return Energy(intensity, pue, region or (table.default_region if table else None), source)


def _device(item: Located) -> str:
    if isinstance(item.value, int) and not isinstance(item.value, bool):
        return str(item.value)  # a GPU index
    return _name(item, "a GPU UUID or index")


def _dcgm(section: Section) -> DcgmSelection:
    url = section.string("url", required=True)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise section.raw("url").error(f'"{url}" is not an http:// or https:// URL')
    uuids_item = section.raw("uuids")
    uuids = None
    if uuids_item is not None:
        uuids = tuple(_device(item) for item in section.items("uuids"))
        if not uuids:
            raise uuids_item.error("give at least one GPU UUID, or leave uuids out to select by pod")
    selection = DcgmSelection(url=url, pod=section.string("pod"), namespace=section.string("namespace"),
                              uuids=uuids, http=parse_http_settings(section))
    if uuids is not None and (selection.pod or selection.namespace):
        raise uuids_item.error("select by uuids or by pod/namespace, not both")
    section.finish()
    return selection


def _gpu_source(section: Section | None) -> GpuSourceConfig:
    if section is None:
        return GpuSourceConfig()
    source = section.string("source", "nvml", choices=GPU_SOURCES)
    dcgm_section = section.section("dcgm")
    if source == "dcgm" and dcgm_section is None:
        raise section.missing("dcgm", "is required with source: dcgm (at least its url)")
    if source != "dcgm" and dcgm_section is not None:
        raise dcgm_section.located.error("gpu.dcgm is read only with gpu.source: dcgm")
    config = GpuSourceConfig(source, _dcgm(dcgm_section) if dcgm_section is not None else None)
    section.finish()
    return config


def parse_config(text: str, source: str, catalog: Catalog | None = None, base_dir: Path | None = None) -> Config:
    """Parse pricing-config YAML text; raises ConfigError naming file, line and key path.

    `base_dir` resolves a relative pricing.catalog_file (the config file's directory).
    """
    catalog = catalog or embedded_catalog()
    root = Section(load_located(text, source))
    pricing_section = root.section("pricing")
    pricing = _pricing(pricing_section, catalog)
    catalog = _with_overlay(pricing_section, catalog, base_dir)
    allocation = _allocation(root.section("allocation"), catalog, pricing)
    models = tuple(_model(item) for item in root.items("models"))
    seen: dict[tuple[str, str], Model] = {}
    for item, model in zip(root.items("models"), models, strict=True):
        if model.key in seen:
            raise item.error(f'model "{model.name}" version "{model.version}" is listed twice')
        seen[model.key] = model
    _check_shared_servers(root.items("models"), models)
    if not models:
        models = (Model(DEFAULT_MODEL_NAME, DEFAULT_MODEL_VERSION, "inference", None, None, MappingProxyType({})),)
    budgets = tuple(_budget(item, models) for item in root.items("budgets"))
    names: set[str] = set()
    for item, budget in zip(root.items("budgets"), budgets, strict=True):
        if budget.name in names:
            raise item.error(f'budget "{budget.name}" is defined twice')
        names.add(budget.name)
    tenants = parse_tenants(root.section("tenants"),
                            [(m.key, m.server.model if m.server else m.name) for m in models])
    _check_tenant_budgets(root, budgets, tenants)
    config = Config(
        pricing=pricing,
        allocation=allocation,
        models=models,
        attribution=root.string("attribution", "requests", choices=ATTRIBUTIONS),
        budgets=budgets,
        processes=_processes(root.section("processes")),
        collection=_collection(root.section("collection")),
        source=source,
        catalog=catalog,
        token_weights=parse_weights(root.section("tokens")),
        tenants=tenants,
        energy=_energy(root.section("energy"), pricing),
        gpu=_gpu_source(root.section("gpu")),
        volumes=parse_volumes(root.section("storage")),
        network=parse_network(root.section("network")),
    )
    root.finish()
    return config


def _check_shared_servers(items: list[Located], models: tuple[Model, ...]) -> None:
    """Models read from one server URL share one connection, so they must name the same credentials and TLS."""
    first: dict[str, Model] = {}
    for item, model in zip(items, models, strict=True):
        if model.server is None:
            continue
        other = first.setdefault(model.server.url, model)
        if other.server.http != model.server.http:
            raise item.error(f'server "{model.server.url}" is also read for model "{other.name}" with other '
                             "authorization, basic_auth, tls_config or follow_redirects; give them the same")


def _check_tenant_budgets(root: Section, budgets: tuple[Budget, ...], tenants: Tenants | None) -> None:
    """A budget that selects tenants needs a gateway to count them, and room to track each one."""
    named = {t for b in budgets for t in b.selector.tenants}
    if named and tenants is None:
        raise root.missing("tenants", "is required: a budget selects tenants, so a gateway must count them")
    if tenants is not None and len(named) > tenants.max_tenants:
        raise root.raw("tenants").error(f"budgets name {len(named)} tenants; max_tenants is {tenants.max_tenants}")
    hosted = [b.name for b in budgets if b.selector.hosted_models]
    if hosted and not (tenants is not None and any(g.hosted_spend for g in tenants.gateways)):
        raise root.raw("budgets").error(f'budget "{hosted[0]}" selects hosted_models, but no gateway in '
                                        "tenants.gateways sets hosted_spend: true to read their spend")


def load_config(path: str | Path | None) -> Config:
    """Load the config file at `path`, or the embedded defaults when `path` is None."""
    if path is None:
        return parse_config("", "<embedded defaults>")
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as exc:
        raise ConfigError(str(path), None, "", f"cannot read: {exc.strerror or exc}") from None
    return parse_config(text, path.name, base_dir=path.parent)
