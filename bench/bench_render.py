"""/metrics render time for 8 GPUs x 20 models, against prometheus_client rendering the same series.

Baseline: the same families, names, label sets and values held in plain
prometheus_client Gauge/Counter objects in a registry, rendered by
generate_latest. Ours: the exporter's collectors building fresh families from
the runtime's snapshots and rendered by the same generate_latest.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.common import load_fake_nvml, paired

GIB = 1024**3
GPUS, MODELS = 8, 20


def build_runtime():
    from ml_cost_exporter.runtime import Runtime

    load_fake_nvml(["init 0"] + [f"gpu {i} {10 * i} {GIB * i} {80 * GIB} {200000 + i} 0 0 GPU-{i:04d} "
                                 f"NVIDIA H100 80GB HBM3" for i in range(GPUS)])
    models = "".join(f"  - {{name: model-{i:02d}, version: v{i % 3}, target_cost_per_1k_usd: 0.5, labels: "
                     f"{{team: t{i % 4}, env: prod}}, server: {{preset: vllm, url: 'http://s/metrics', "
                     f"model: m{i}}}}}\n" for i in range(MODELS))
    budgets = "".join(f"  - {{name: team-t{i}, amount_usd: 10000, selector: {{team: t{i}}}}}\n" for i in range(4))
    config = Path(tempfile.mkdtemp()) / "pricing.yaml"
    config.write_text(textwrap.dedent(f"""
        allocation: {{gpu: {{type: h100, count: {GPUS}}}, vcpus: 192, memory_gib: 2048}}
        models:
        {models}budgets:
        {budgets}""").replace("\n        ", "\n"))
    counts = iter(range(0, 10**9, 1000))

    def fetch(url: str) -> str:
        n = next(counts)
        return "".join(f'vllm:request_success_total{{finished_reason="stop",model_name="m{i}"}} {n + i}\n'
                       f'vllm:prompt_tokens_total{{model_name="m{i}"}} {n * 50}\n'
                       f'vllm:generation_tokens_total{{model_name="m{i}"}} {n * 80}\n' for i in range(MODELS))

    runtime = Runtime(str(config), frozenset({"gpu", "server"}), environ={}, server_fetch=fetch)
    for _ in range(3):
        runtime.tick()
    return runtime


def baseline_registry(text: str) -> CollectorRegistry:
    """The same series in plain prometheus_client metric objects."""
    registry = CollectorRegistry()
    for family in text_string_to_metric_families(text):
        samples = family.samples
        if not samples:
            continue
        labelnames = sorted(samples[0].labels)
        kind = Counter if family.type == "counter" else Gauge
        metric = kind(family.name, family.documentation or "x", labelnames, registry=registry)
        for sample in samples:
            child = metric.labels(**sample.labels) if labelnames else metric
            if kind is Counter:
                child.inc(sample.value)
            else:
                child.set(sample.value)
    return registry


def main() -> None:
    from ml_cost_exporter.exposition.collectors import build_registry

    runtime = build_runtime()
    ours = build_registry(runtime.state, runtime.clocks.monotonic)
    text = generate_latest(ours).decode()
    baseline = baseline_registry(text)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    ours_s, base_s = paired(lambda: generate_latest(ours), lambda: generate_latest(baseline))
    print(f"render: {GPUS} GPUs x {MODELS} models, {series} series, {len(text)} bytes")
    print(f"render: ml-cost-exporter {ours_s * 1e3:.3f} ms, prometheus_client objects {base_s * 1e3:.3f} ms, "
          f"ratio {ours_s / base_s:.2f}x (goal <= 1.2x)")
    runtime.close()


if __name__ == "__main__":
    sys.exit(main())
