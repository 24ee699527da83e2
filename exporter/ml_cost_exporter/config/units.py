"""Names and units every layer shares, defined once: a model's key, bytes per GiB, MIG profiles, durations."""

from __future__ import annotations

import re

ModelKey = tuple[str, str]  # (model, version)
GIB = 1024.0**3
# A MIG profile such as "1g.10gb": compute slices (of 7) and memory in GB.
MIG_PROFILE = re.compile(r"(\d+)g\.(\d+)gb")

_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration ("90s", "15m", "1h30m"); ValueError naming the text otherwise."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f'"{text}" is not a duration like 90s, 15m or 1h30m')
    return float(sum(int(n) * _DURATION_SECONDS[u] for n, u in parts))
