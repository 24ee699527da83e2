"""The pod's own labels (a downward-API file), added to every model's attribution labels at load."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import Config, load_config

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def read_pod_labels(path: Path) -> dict[str, str]:
    """The pod's labels from a downward-API file (`key="value"` lines), keeping valid Prometheus label names."""
    labels = {}
    for line in path.read_text().splitlines():
        key, sep, quoted = line.partition("=")
        if not sep or not _LABEL_NAME.fullmatch(key):
            continue  # keys such as app.kubernetes.io/name are not label names
        try:
            value = json.loads(quoted)  # the kubelet writes Go-quoted strings, which JSON reads
        except ValueError:
            continue
        if isinstance(value, str):
            labels[key] = value
    return labels


def with_pod_labels(config: Config, pod_labels: Mapping[str, str]) -> Config:
    """Add the pod's labels to every model's attribution labels; labels set in the config win."""
    if not pod_labels:
        return config
    models = tuple(replace(m, labels=MappingProxyType({**pod_labels, **m.labels})) for m in config.models)
    return replace(config, models=models)


def load_pod_config(config_path: str | None, pod_labels_file: str | None) -> Config:
    """The config file (or the embedded defaults) with the pod's labels; ConfigError naming the file otherwise."""
    config = load_config(config_path)
    if pod_labels_file is None:
        return config
    try:
        labels = read_pod_labels(Path(pod_labels_file))
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(pod_labels_file, None, "", f"cannot read pod labels: {reason}") from None
    return with_pod_labels(config, labels)
