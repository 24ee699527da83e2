"""Inference-server presets: where each server keeps its request, token and compute counters.

A quantity is read from one or more terms, each a counter-like sample with label filters;
a term marked `subtract` is taken away (successes = all requests - errors, for servers that
count no successes). Adding a quantity is one entry in QUANTITIES and one line per preset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from types import MappingProxyType

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Located, Section, load_located


class Quantity(StrEnum):
    """Everything a preset can read from a server, each in its base unit; the one list of their names."""

    REQUESTS = "requests"  # successful requests only
    # Admitted and not completed (errors, aborts, timeouts), never those rejected before doing work.
    FAILED_REQUESTS = "failed_requests"
    PROMPT_TOKENS = "prompt_tokens"
    GENERATION_TOKENS = "generation_tokens"
    COMPUTE_SECONDS = "compute_seconds"
    SAMPLES = "samples"
    STEPS = "steps"
    EPOCHS = "epochs"
    TRAINING_TOKENS = "training_tokens"
    EXPECTED_EPOCHS = "expected_epochs"
    EXPECTED_SAMPLES = "expected_samples"
    QUALITY = "quality"
    # Token economics (docs/tokens.md): phase timing and prompt tokens served from the prefix cache.
    PREFILL_SECONDS = "prefill_seconds"
    DECODE_SECONDS = "decode_seconds"
    CACHED_PROMPT_TOKENS = "cached_prompt_tokens"
    CACHE_HITS = "cache_hits"  # successful requests a response cache answered without model work


Q = Quantity
QUANTITIES = tuple(Quantity)
WORK_QUANTITIES = (Q.PROMPT_TOKENS, Q.GENERATION_TOKENS, Q.COMPUTE_SECONDS)
PHASE_QUANTITIES = (Q.PREFILL_SECONDS, Q.DECODE_SECONDS, Q.CACHED_PROMPT_TOKENS)
# What a training job reports about its progress; a preset needs requests or one of these.
PROGRESS_QUANTITIES = (Q.SAMPLES, Q.STEPS, Q.EPOCHS)
# A drop in these is a job restarted (often resumed from a checkpoint with its counters restored), not
# new work: the new value becomes the baseline instead of counting as progress made since the last read.
BASELINE_ON_RESET = (*PROGRESS_QUANTITIES, Q.TRAINING_TOKENS)
# Read as their current value (gauges), not as counter increments.
GAUGE_QUANTITIES = (Q.EXPECTED_EPOCHS, Q.EXPECTED_SAMPLES, Q.QUALITY)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelFilters = tuple[tuple[str, re.Pattern[str]], ...]


@dataclass(frozen=True)
class MetricSpec:
    """One counter-like sample to read: its unit scale, label filters and sign.

    `match` patterns must match the whole label value (a missing label reads as ""); `exclude`
    patterns must not. A `server_wide` series carries no model label and is read only when its
    server serves a single model.
    """

    metric: str
    scale: float = 1.0
    match: LabelFilters = ()
    exclude: LabelFilters = ()
    subtract: bool = False
    server_wide: bool = False


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model_label: str | None
    version_label: str | None
    metrics: Mapping[str, tuple[MetricSpec, ...]]  # quantity -> terms, summed with their signs


def _label_filters(section: Section, key: str) -> LabelFilters:
    filters = []
    filter_section = section.section(key)
    if filter_section is not None:
        for label, item in filter_section:
            if not _LABEL_NAME.fullmatch(label):
                raise item.error(f'"{label}" is not a valid label name')
            if not isinstance(item.value, str | int | float) or isinstance(item.value, bool):
                raise item.error("expected a regular expression string")
            try:
                filters.append((label, re.compile(str(item.value))))
            except re.error as exc:
                raise item.error(f"invalid regular expression: {exc}") from None
    return tuple(filters)


def parse_metric_spec(located: Located) -> MetricSpec:
    """Read one term: `{metric, scale, match, exclude, subtract, server_wide}`."""
    section = Section(located)
    metric = section.string("metric", required=True)
    if not _METRIC_NAME.fullmatch(metric):
        raise section.raw("metric").error(f'"{metric}" is not a valid Prometheus metric name')
    spec = MetricSpec(
        metric=metric,
        scale=section.number("scale", default=1.0, minimum=0, exclusive_minimum=True),
        match=_label_filters(section, "match"),
        exclude=_label_filters(section, "exclude"),
        subtract=section.boolean("subtract", False),
        server_wide=section.boolean("server_wide", False),
    )
    section.finish()
    return spec


def parse_quantity(located: Located) -> tuple[MetricSpec, ...]:
    """A quantity is one term (a mapping) or a list of terms; at least one term adds."""
    items = located.value if isinstance(located.value, list) else [located]
    if not items:
        raise located.error("expected at least one metric term")
    terms = tuple(parse_metric_spec(item) for item in items)
    if all(term.subtract for term in terms):
        raise located.error("every term subtracts; at least one must add")
    return terms


def label_name(section: Section, key: str) -> str | None:
    value = section.string(key)
    if value is not None and not _LABEL_NAME.fullmatch(value):
        raise section.raw(key).error(f'"{value}" is not a valid label name')
    return value


def _inherited_label(section: Section, key: str, base: str | None) -> str | None:
    return label_name(section, key) if section.has(key) else base


def parse_preset(name: str, section: Section, base: Preset | None = None) -> Preset:
    """Read a preset mapping; with `base`, keys given override the base preset's."""
    metrics = dict(base.metrics) if base else {}
    for quantity in QUANTITIES:
        item = section.raw(quantity)
        if item is not None:
            metrics[quantity] = parse_quantity(item)
    if "requests" not in metrics and not any(q in metrics for q in (*WORK_QUANTITIES, *PROGRESS_QUANTITIES)):
        raise section.missing("requests", "is required: the counter of successful requests (or, for a server "
                                          "that counts none, prompt_tokens, generation_tokens or compute_seconds; "
                                          "for a training job, samples, steps or epochs)")
    return Preset(
        name=name,
        description=section.string("description", default=base.description if base else ""),
        model_label=_inherited_label(section, "model_label", base.model_label if base else None),
        version_label=_inherited_label(section, "version_label", base.version_label if base else None),
        metrics=MappingProxyType(metrics),
    )


def parse_presets(text: str, source: str) -> Mapping[str, Preset]:
    presets = {}
    for name, item in Section(load_located(text, source)):
        section = Section(item)
        presets[name] = parse_preset(name, section)
        section.finish()
    return MappingProxyType(presets)


@cache
def embedded_presets() -> Mapping[str, Preset]:
    text = resources.files("ml_cost_exporter.config").joinpath("presets.yaml").read_text()
    try:
        return parse_presets(text, "presets.yaml")
    except ConfigError as exc:
        raise RuntimeError(f"embedded server presets are invalid: {exc}") from exc
