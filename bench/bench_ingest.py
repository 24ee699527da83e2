"""Ingesting a 5,000-line vLLM exposition, against prometheus_client.parser on the same text.

Ours is the whole ingest path of the server source (select the wanted
samples, parse their labels, match models, compute counter deltas). The
baseline parses the text with text_string_to_metric_families, as an exporter
built on the stock parser would, consuming every sample.
"""

from __future__ import annotations

import random
import sys

from prometheus_client.parser import text_string_to_metric_families

from bench.common import paired

BUCKETS = ["0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5",
           "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "+Inf"]
HISTOGRAMS = ["time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
              "request_queue_time_seconds", "request_inference_time_seconds", "request_prefill_time_seconds",
              "request_decode_time_seconds", "request_prompt_tokens", "request_generation_tokens",
              "request_params_max_tokens"]


def vllm_exposition(lines: int = 5000, seed: int = 1) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    model = 0
    while len(out) < lines:
        name = f"org/model-{model}"
        out += ["# HELP vllm:num_requests_running Number of requests currently running on GPU.",
                "# TYPE vllm:num_requests_running gauge",
                f'vllm:num_requests_running{{model_name="{name}"}} {rng.randint(0, 64)}.0',
                "# TYPE vllm:gpu_cache_usage_perc gauge",
                f'vllm:gpu_cache_usage_perc{{model_name="{name}"}} {rng.random():.4f}',
                "# TYPE vllm:prompt_tokens_total counter",
                f'vllm:prompt_tokens_total{{model_name="{name}"}} {rng.randint(1, 10**9)}.0',
                "# TYPE vllm:generation_tokens_total counter",
                f'vllm:generation_tokens_total{{model_name="{name}"}} {rng.randint(1, 10**9)}.0',
                "# TYPE vllm:request_success_total counter"]
        out += [f'vllm:request_success_total{{finished_reason="{r}",model_name="{name}"}} {rng.randint(1, 10**6)}.0'
                for r in ("stop", "length", "abort")]
        for histogram in HISTOGRAMS:
            out.append(f"# HELP vllm:{histogram} Histogram of {histogram.replace('_', ' ')}.")
            out.append(f"# TYPE vllm:{histogram} histogram")
            count = 0
            for bucket in BUCKETS:
                count += rng.randint(0, 1000)
                out.append(f'vllm:{histogram}_bucket{{le="{bucket}",model_name="{name}"}} {count}.0')
            out.append(f'vllm:{histogram}_sum{{model_name="{name}"}} {rng.random() * 1e5:.3f}')
            out.append(f'vllm:{histogram}_count{{model_name="{name}"}} {count}.0')
        model += 1
    return "\n".join(out[:lines]) + "\n"


def main() -> None:
    from ml_cost_exporter.config.schema import parse_config
    from ml_cost_exporter.sources.server import ServerSource

    text = vllm_exposition()
    models = "".join(f"  - {{name: m{i}, server: {{preset: vllm, url: 'http://s/metrics', model: 'org/model-{i}'}}}}\n"
                     for i in range(3))
    config = parse_config("models:\n" + models, "bench.yaml")
    source = ServerSource("http://s/metrics", config.models, 1, 1 << 26, 10000, 15, fetch=lambda url: text)

    def ours():
        reading = source.sample()
        assert reading.ok and reading.series > 0

    def baseline():
        for family in text_string_to_metric_families(text):
            for _sample in family.samples:
                pass

    ours_s, base_s = paired(ours, baseline, rounds=15, inner=3)
    print(f"ingest: {text.count(chr(10))} lines, {len(text)} bytes, {source.last_reading.series} series kept")
    print(f"ingest: ml-cost-exporter {ours_s * 1e3:.3f} ms, prometheus_client.parser {base_s * 1e3:.3f} ms, "
          f"speed-up {base_s / ours_s:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    sys.exit(main())
