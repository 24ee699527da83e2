"""Overhead of @track_cost per call, against the same function undecorated in the same run.

Baseline: a plain function (and a coroutine awaited in one event loop) that
returns a small object. Ours: the same body under @track_cost on a fresh
registry, once returning a plain value and once an OpenAI-like result whose
`usage` it reads. The figure is the difference of the medians, per call; the
goal is under 5 µs.
"""

from __future__ import annotations

import argparse
import asyncio
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from bench.common import paired
from ml_cost_exporter.instrument import track_cost

GOAL_SECONDS = 5e-6
RESULT = SimpleNamespace(text="ok")
RESULT_WITH_USAGE = SimpleNamespace(text="ok", usage=SimpleNamespace(prompt_tokens=12, completion_tokens=34))


def loop_of(fn, calls: int):
    def run() -> None:
        for _ in range(calls):
            fn()
    return run


def async_loop_of(coroutine_fn, calls: int):
    loop = asyncio.new_event_loop()

    async def many() -> None:
        for _ in range(calls):
            await coroutine_fn()

    return lambda: loop.run_until_complete(many())


def cases(registry: CollectorRegistry, calls: int) -> dict[str, tuple]:
    def plain():
        return RESULT

    def with_usage():
        return RESULT_WITH_USAGE

    async def plain_async():
        return RESULT

    tracked = track_cost("bench", "v1", registry=registry)
    return {
        "sync, plain result": (loop_of(tracked(plain), calls), loop_of(plain, calls)),
        "sync, result.usage read": (loop_of(tracked(with_usage), calls), loop_of(with_usage, calls)),
        "async, plain result": (async_loop_of(tracked(plain_async), calls), async_loop_of(plain_async, calls)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    registry = CollectorRegistry()
    print(f"{'case':<26} {'undecorated':>12} {'@track_cost':>12} {'overhead':>10} {'ratio':>7}")
    worst = 0.0
    for name, (ours, baseline) in cases(registry, args.calls).items():
        ours_s, base_s = paired(ours, baseline, rounds=args.rounds, inner=1)
        per_ours, per_base = ours_s / args.calls, base_s / args.calls
        overhead = per_ours - per_base
        worst = max(worst, overhead)
        print(f"{name:<26} {per_base * 1e6:>10.2f}µs {per_ours * 1e6:>10.2f}µs {overhead * 1e6:>8.2f}µs "
              f"{per_ours / per_base:>6.1f}x")
    calls = registry.get_sample_value("mlcost_app_requests_total", {"model": "bench", "version": "v1",
                                                                    "outcome": "success", "exception": ""})
    print(f"worst overhead {worst * 1e6:.2f} µs per call (goal < {GOAL_SECONDS * 1e6:.0f} µs): "
          f"{'met' if worst < GOAL_SECONDS else 'MISSED'}; {calls:.0f} calls counted")


if __name__ == "__main__":
    main()
