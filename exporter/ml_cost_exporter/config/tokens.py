"""Token economics config: the prompt/generation weight fallback and the tenant gateways.

Parsed from the pricing config's `tokens:` and `tenants:` sections and from the
embedded gateway presets (gateways.yaml), strictly like the rest of the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from urllib.parse import urlparse

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.httpconfig import parse_http_settings
from ml_cost_exporter.config.located import Located, Section, load_located, suggest
from ml_cost_exporter.config.presets import MetricSpec, label_name, parse_metric_spec
from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.httpclient import HttpSettings

TOKEN_KINDS = ("input", "output", "total")
DEFAULT_MAX_TENANTS = 100
OVERFLOW_TENANT = "other"
UNATTRIBUTED_TENANT = "unattributed"
REPLICAS = ("single", "dns")  # dns: read every address the url's host resolves to (a headless Service)
MAX_REPLICA_URLS = 64


@dataclass(frozen=True)
class TokenWeights:
    """Relative GPU cost of one computed prompt token and one generated token, for the phase split
    where the server reports no phase timing."""

    prompt: float = 1.0
    generation: float = 4.0


@dataclass(frozen=True)
class GatewayPreset:
    name: str
    description: str
    model_label: str
    tenant_label: str
    metrics: Mapping[str, MetricSpec]  # "input" / "output" / "total" -> counter spec
    spend: MetricSpec | None = None  # the gateway's own spend counter in USD, by hosted model
    spend_model_label: str | None = None


@dataclass(frozen=True)
class Gateway:
    """One gateway's /metrics, the labels naming model and tenant, and which gateway model is which model."""

    preset: GatewayPreset
    url: str
    model_label: str
    tenant_label: str
    models: Mapping[str, ModelKey]  # the gateway's model label value -> (model, version)
    http: HttpSettings = field(default_factory=HttpSettings)  # credentials, TLS, redirects
    urls: tuple[str, ...] = ()  # every replica read and summed; url is the first (the gateway's name)
    replicas: str = "single"  # single | dns
    hosted_spend: bool = False  # bring the gateway's API spend into the books (one exporter per gateway)
    self_hosted_models: tuple[str, ...] = ()  # more spend model values that are self-hosted: ignored


@dataclass(frozen=True)
class Tenants:
    gateways: tuple[Gateway, ...]
    max_tenants: int  # tenants tracked in all; later ones are summed into "other"


def _gateway_preset(name: str, section: Section) -> GatewayPreset:
    metrics = {}
    for kind in TOKEN_KINDS:
        item = section.raw(f"{kind}_tokens")
        if item is not None:
            metrics[kind] = parse_metric_spec(item)
    if "total" not in metrics and not {"input", "output"} <= set(metrics):
        raise section.located.error("a gateway preset needs input_tokens and output_tokens, or total_tokens")
    model_label = label_name(section, "model_label")
    tenant_label = label_name(section, "tenant_label")
    if model_label is None or tenant_label is None:
        raise section.missing("model_label" if model_label is None else "tenant_label")
    spend = section.raw("spend_usd")
    preset = GatewayPreset(name, section.string("description", ""), model_label, tenant_label,
                           MappingProxyType(metrics), parse_metric_spec(spend) if spend is not None else None,
                           label_name(section, "spend_model_label"))
    if (preset.spend is None) != (preset.spend_model_label is None):
        raise section.located.error("spend_usd and spend_model_label go together")
    section.finish()
    return preset


def parse_gateway_presets(text: str, source: str) -> Mapping[str, GatewayPreset]:
    return MappingProxyType({name: _gateway_preset(name, Section(item))
                             for name, item in Section(load_located(text, source))})


@cache
def embedded_gateway_presets() -> Mapping[str, GatewayPreset]:
    text = resources.files("ml_cost_exporter.config").joinpath("gateways.yaml").read_text()
    try:
        return parse_gateway_presets(text, "gateways.yaml")
    except ConfigError as exc:
        raise RuntimeError(f"embedded gateway presets are invalid: {exc}") from exc


def parse_weights(section: Section | None) -> TokenWeights:
    """The `tokens:` section: prompt_token_weight and generation_token_weight (positive numbers)."""
    if section is None:
        return TokenWeights()
    defaults = TokenWeights()
    weights = TokenWeights(
        prompt=section.number("prompt_token_weight", defaults.prompt, minimum=0, exclusive_minimum=True),
        generation=section.number("generation_token_weight", defaults.generation, minimum=0,
                                  exclusive_minimum=True))
    section.finish()
    return weights


def _gateway_models(section: Section, models: Sequence[tuple[ModelKey, str]]) -> Mapping[str, ModelKey]:
    """Map the gateway's model label values to configured models: given, else each model's server name."""
    by_name: dict[str, list[ModelKey]] = {}
    for key, _ in models:
        by_name.setdefault(key[0], []).append(key)
    mapping: dict[str, ModelKey] = {}
    given = section.section("models")
    if given is None:
        defaults = [value for _, value in models]
        for key, value in models:
            if defaults.count(value) == 1:
                mapping[value] = key
        return MappingProxyType(mapping)
    for name, item in given:
        if name not in by_name:
            raise item.error(f'no model named "{name}"{suggest(name, sorted(by_name))}')
        if len(by_name[name]) > 1:
            raise item.error(f'model "{name}" has several versions; a gateway cannot tell them apart')
        value = item.value
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise item.error("expected the gateway's model label value, a string")
        if str(value) in mapping:
            raise item.error(f'gateway model "{value}" is mapped twice')
        mapping[str(value)] = by_name[name][0]
    return MappingProxyType(mapping)


def _gateway(item: Located, models: Sequence[tuple[ModelKey, str]]) -> Gateway:
    section = Section(item)
    presets = embedded_gateway_presets()
    preset = presets[section.string("preset", required=True, choices=tuple(presets))]
    urls = _gateway_urls(section)
    gateway = Gateway(
        preset=preset,
        url=urls[0],
        model_label=label_name(section, "model_label") or preset.model_label,
        tenant_label=label_name(section, "tenant_label") or preset.tenant_label,
        models=_gateway_models(section, models),
        http=parse_http_settings(section),
        urls=urls,
        replicas=section.string("replicas", "single", choices=REPLICAS),
        hosted_spend=section.boolean("hosted_spend", False),
        self_hosted_models=tuple(str(item.value) for item in section.items("self_hosted_models")),
    )
    if gateway.replicas == "dns" and section.has("urls"):
        raise section.raw("replicas").error("replicas: dns resolves the host of url; with urls, list every replica")
    if gateway.hosted_spend and preset.spend is None:
        raise section.raw("hosted_spend").error(f'the {preset.name} preset has no spend counter')
    section.finish()
    return gateway


def _http_url(item: Located) -> str:
    url = item.value
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise item.error(f'"{url}" is not an http:// or https:// URL')
    return url


def _gateway_urls(section: Section) -> tuple[str, ...]:
    """`url`, or `urls`: the gateway's replicas, each read and summed (one Service URL alternates between them)."""
    url_item, urls_items = section.raw("url"), section.items("urls")
    if url_item is not None and urls_items:
        raise section.raw("urls").error("give url or urls, not both")
    if url_item is not None:
        return (_http_url(url_item),)
    if not urls_items:
        raise section.missing("url", "is required (or urls, a list of the gateway's replica URLs)")
    if len(urls_items) > MAX_REPLICA_URLS:
        raise section.raw("urls").error(f"at most {MAX_REPLICA_URLS} replica URLs")
    urls: list[str] = []
    for item in urls_items:
        url = _http_url(item)
        if url in urls:
            raise item.error(f'"{url}" is listed twice')
        urls.append(url)
    return tuple(urls)


def parse_tenants(section: Section | None, models: Sequence[tuple[ModelKey, str]]) -> Tenants | None:
    """The `tenants:` section; `models` pairs each model key with its default gateway model value."""
    if section is None:
        return None
    items = section.items("gateways")
    if not items:
        raise section.missing("gateways", "needs at least one gateway to read tenants' tokens from")
    gateways = tuple(_gateway(item, models) for item in items)
    urls = [g.url for g in gateways]
    for item, gateway in zip(items, gateways, strict=True):
        if urls.count(gateway.url) > 1:
            raise item.error(f'gateway "{gateway.url}" is listed twice')
    tenants = Tenants(gateways, int(section.number("max_tenants", DEFAULT_MAX_TENANTS, minimum=1, maximum=10000)))
    section.finish()
    return tenants
