"""Relative GPU throughput for right-sizing: dense FP16 tensor TFLOPS from NVIDIA's datasheets.

A proxy, not a benchmark: `recommend` uses it only to check that a smaller GPU keeps headroom over the
observed peak utilization, and says so in each recommendation's confidence.
"""

from __future__ import annotations

import re

TENSOR_TFLOPS = {"t4": 65, "l4": 121, "a10g": 70, "a10": 125, "v100": 125, "a100-40gb": 312, "a100-80gb": 312,
                 "h100": 989, "h200": 989}
MIG_PROFILES = {  # profile: (compute slices, memory GiB), per parent GPU type
    "a100-40gb": ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb"),
    "a100-80gb": ("1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb"),
    "h100": ("1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb"),
    "h200": ("1g.18gb", "2g.35gb", "3g.71gb", "4g.71gb"),
}
_PROFILE = re.compile(r"(\d+)g\.(\d+)gb")


def mig_shape(profile: str) -> tuple[int, float]:
    matched = _PROFILE.fullmatch(profile)
    return int(matched.group(1)), float(matched.group(2))
