"""Inference-server presets: where each server keeps its request, token and compute counters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Located, Section, load_located

QUANTITIES = ("requests", "failed_requests", "prompt_tokens", "generation_tokens", "compute_seconds", *(
    "samples", "steps", "epochs", "training_tokens", "expected_epochs", "expected_samples", "quality"))
# Token economics (docs/tokens.md): phase timing and prompt tokens served from the prefix cache.
PHASE_QUANTITIES = ("prefill_seconds", "decode_seconds", "cached_prompt_tokens")
QUANTITIES = (*QUANTITIES, *PHASE_QUANTITIES)
# What a training job reports about its progress; a preset needs requests or one of these.
PROGRESS_QUANTITIES = ("samples", "steps", "epochs")
# A drop in these is a job restarted (often resumed from a checkpoint with its counters restored), not
# new work: the new value becomes the baseline instead of counting as progress made since the last read.
BASELINE_ON_RESET = (*PROGRESS_QUANTITIES, "training_tokens")
# Read as their current value (gauges), not as counter increments.
GAUGE_QUANTITIES = ("expected_epochs", "expected_samples", "quality")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class MetricSpec:
    """One counter-like sample to read, its unit scale and the label filters it must pass."""

    metric: str
    scale: float = 1.0
    match: tuple[tuple[str, re.Pattern[str]], ...] = ()


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model_label: str | None
    version_label: str | None
    metrics: Mapping[str, MetricSpec]  # quantity -> spec; "requests" or a progress quantity is present


def parse_metric_spec(located: Located) -> MetricSpec:
    section = Section(located)
    metric = section.string("metric", required=True)
    if not _METRIC_NAME.fullmatch(metric):
        raise section.raw("metric").error(f'"{metric}" is not a valid Prometheus metric name')
    scale = section.number("scale", default=1.0, minimum=0, exclusive_minimum=True)
    match = []
    match_section = section.section("match")
    if match_section is not None:
        for label, item in match_section:
            if not _LABEL_NAME.fullmatch(label):
                raise item.error(f'"{label}" is not a valid label name')
            try:
                match.append((label, re.compile(str(item.value))))
            except re.error as exc:
                raise item.error(f"invalid regular expression: {exc}") from None
    section.finish()
    return MetricSpec(metric, scale, tuple(match))


def label_name(section: Section, key: str) -> str | None:
    value = section.string(key)
    if value is not None and not _LABEL_NAME.fullmatch(value):
        raise section.raw(key).error(f'"{value}" is not a valid label name')
    return value


def parse_preset(name: str, section: Section, base: Preset | None = None) -> Preset:
    """Read a preset mapping; with `base`, keys given override the base preset's."""
    metrics = dict(base.metrics) if base else {}
    for quantity in QUANTITIES:
        item = section.raw(quantity)
        if item is not None:
            metrics[quantity] = parse_metric_spec(item)
    if "requests" not in metrics and not any(q in metrics for q in PROGRESS_QUANTITIES):
        raise section.missing("requests", "is required: the counter of requests served (or, for a training "
                                          "job, samples, steps or epochs)")
    preset = Preset(
        name=name,
        description=section.string("description", default=base.description if base else ""),
        model_label=label_name(section, "model_label") if section.has("model_label") else (
            base.model_label if base else None),
        version_label=label_name(section, "version_label") if section.has("version_label") else (
            base.version_label if base else None),
        metrics=MappingProxyType(metrics),
    )
    return preset


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


