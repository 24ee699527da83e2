"""@track_cost: what it counts, and that nothing a tracked call does or returns breaks it or its caller."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import textwrap
import traceback
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from ml_cost_exporter import instrument
from ml_cost_exporter.instrument import MAX_EXCEPTION_NAMES, current_call, report, track_cost
from tests.conftest import REPO, free_port, wait_until

LABELS = {"model": "chat", "version": "v2"}


class StepClock:
    """Each reading is `step` seconds after the last: a call that reads it twice lasts `step`."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def requests_of(registry: CollectorRegistry, outcome: str = "success", exception: str = "") -> float | None:
    return registry.get_sample_value("mlcost_app_requests_total", {**LABELS, "outcome": outcome,
                                                                   "exception": exception})


def tokens_of(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("mlcost_app_tokens_total", {**LABELS, "kind": kind})


def hits_of(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("mlcost_app_cache_hits_total", LABELS)


def busy_of(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("mlcost_app_busy_seconds_total", LABELS)


def refused_of(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("mlcost_app_refused_reports_total", {**LABELS, "reason": reason})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_importing_it_loads_prometheus_client_and_nothing_else_of_the_exporter():
    probe = textwrap.dedent("""
        import sys
        import ml_cost_exporter.instrument
        ours = sorted(m for m in sys.modules if m.startswith("ml_cost_exporter"))
        heavy = sorted(m for m in ("psutil", "pynvml", "yaml", "requests") if m in sys.modules)
        print(ours, heavy)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "exporter")})
    assert out.stdout.strip() == "['ml_cost_exporter', 'ml_cost_exporter.instrument'] []"


def test_every_series_exists_at_zero_as_soon_as_a_function_is_decorated(registry):
    track_cost("chat", "v2", registry=registry)(lambda: None)
    assert requests_of(registry) == 0.0
    assert requests_of(registry, "cancelled", "CancelledError") == 0.0
    assert (tokens_of(registry, "prompt"), tokens_of(registry, "generation")) == (0.0, 0.0)
    assert (hits_of(registry), busy_of(registry)) == (0.0, 0.0)


def test_sync_calls_count_successes_and_busy_seconds_from_the_clock(registry):
    @track_cost("chat", "v2", registry=registry, clock=StepClock(0.25))
    def answer(x):
        return x * 2

    assert [answer(i) for i in range(3)] == [0, 2, 4]
    assert requests_of(registry) == 3.0
    assert busy_of(registry) == 0.75
    assert answer.__name__ == "answer"


def test_async_calls_count_successes_and_busy_seconds(registry):
    @track_cost("chat", "v2", registry=registry, clock=StepClock(0.5))
    async def answer(x):
        await asyncio.sleep(0)
        return x

    async def main():
        return [await answer(i) for i in range(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert requests_of(registry) == 4.0
    assert busy_of(registry) == 4 * 0.5


def test_a_raised_exception_propagates_as_the_same_object_with_its_traceback_and_counts_by_class(registry):
    raised = ValueError("bad prompt")

    @track_cost("chat", "v2", registry=registry)
    def failing():
        raise raised

    with pytest.raises(ValueError) as caught:
        failing()
    assert caught.value is raised
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == "failing"
    assert requests_of(registry, "error", "ValueError") == 1.0
    assert requests_of(registry) == 0.0


def test_an_async_exception_propagates_unchanged_and_counts_by_class(registry):
    @track_cost("chat", "v2", registry=registry)
    async def failing():
        raise KeyError("k")

    with pytest.raises(KeyError, match="'k'"):
        asyncio.run(failing())
    assert requests_of(registry, "error", "KeyError") == 1.0


def test_a_cancelled_coroutine_counts_as_cancelled_and_the_cancellation_propagates(registry):
    @track_cost("chat", "v2", registry=registry)
    async def slow(event):
        event.set()
        await asyncio.sleep(60)

    async def main():
        event = asyncio.Event()
        task = asyncio.create_task(slow(event))
        await event.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main()) is True
    assert requests_of(registry, "cancelled", "CancelledError") == 1.0
    assert requests_of(registry) == 0.0


def test_exception_class_names_past_the_cap_count_as_other(registry):
    @track_cost("chat", "v2", registry=registry)
    def failing(i):
        raise type(f"Error{i}", (Exception,), {})()

    for i in range(MAX_EXCEPTION_NAMES + 5):
        with pytest.raises(Exception, match=r"^$"):
            failing(i)
    assert requests_of(registry, "error", "Error0") == 1.0
    assert requests_of(registry, "error", f"Error{MAX_EXCEPTION_NAMES - 1}") == 1.0
    assert requests_of(registry, "error", f"Error{MAX_EXCEPTION_NAMES}") is None
    assert requests_of(registry, "error", "other") == 5.0


@pytest.mark.parametrize("result", [
    SimpleNamespace(usage=SimpleNamespace(prompt_tokens=12, completion_tokens=30)),  # OpenAI SDK objects
    {"usage": {"prompt_tokens": 12, "completion_tokens": 30}},  # OpenAI JSON
    SimpleNamespace(usage=SimpleNamespace(input_tokens=12, output_tokens=30)),  # input/output naming
], ids=["openai-object", "openai-dict", "input-output"])
def test_tokens_are_read_from_the_returned_usage(registry, result):
    @track_cost("chat", "v2", registry=registry)
    def complete():
        return result

    assert complete() is result
    complete()
    assert (tokens_of(registry, "prompt"), tokens_of(registry, "generation")) == (24.0, 60.0)


def test_tokens_reported_from_inside_the_call_take_precedence_over_the_result(registry):
    @track_cost("chat", "v2", registry=registry)
    def complete():
        report(prompt_tokens=5)
        report(generation_tokens=7)
        report(generation_tokens=1)
        return {"usage": {"prompt_tokens": 1000, "completion_tokens": 1000}}

    complete()
    assert (tokens_of(registry, "prompt"), tokens_of(registry, "generation")) == (5.0, 8.0)
    assert current_call() is None


def test_the_context_manager_counts_its_block_and_its_reports(registry):
    with track_cost("chat", "v2", registry=registry, clock=StepClock(2.0)) as call:
        call.tokens(prompt=3, generation=4)
        call.cache_hit()
    with pytest.raises(RuntimeError), track_cost("chat", "v2", registry=registry) as call:
        call.tokens(generation=10)  # work done before the failure still counts
        raise RuntimeError("late failure")
    assert requests_of(registry) == 1.0
    assert requests_of(registry, "error", "RuntimeError") == 1.0
    assert (tokens_of(registry, "prompt"), tokens_of(registry, "generation")) == (3.0, 14.0)
    assert hits_of(registry) == 1.0
    assert busy_of(registry) > 2.0


def test_one_tracker_entered_by_many_tasks_at_once_counts_each_block(registry):
    tracker = track_cost("chat", "v2", registry=registry)

    async def block(i):
        async with tracker as call:
            await asyncio.sleep(0)
            call.tokens(prompt=i)

    async def main():
        await asyncio.gather(*(block(i) for i in range(10)))

    asyncio.run(main())
    assert requests_of(registry) == 10.0
    assert tokens_of(registry, "prompt") == sum(range(10))


def test_a_usage_callback_reads_tokens_from_any_result(registry):
    @track_cost("chat", "v2", registry=registry, usage=lambda r: (r["in"], r["out"]))
    def complete():
        return {"in": 2, "out": 9}

    @track_cost("chat", "v2", registry=registry, usage=lambda r: {"prompt": 1, "generation": None})
    def embed():
        return "vector"

    complete()
    embed()
    assert (tokens_of(registry, "prompt"), tokens_of(registry, "generation")) == (3.0, 9.0)


@pytest.mark.parametrize(("how", "expected"), [
    ({"result": {"cache_hit": True}}, 1.0),
    ({"result": SimpleNamespace(cache_hit=True)}, 1.0),
    ({"result": {"cache_hit": "yes"}}, 0.0),  # only True is a hit
    ({"result": {"cache_hit": 1}}, 0.0),
    ({"result": "cached", "cache_hit": lambda r: r == "cached"}, 1.0),
    ({"result": None, "report": True}, 1.0),
], ids=["dict", "attribute", "truthy-string", "one", "callback", "report"])
def test_cache_hits_count_only_a_hit_reported_as_true(registry, how, expected):
    @track_cost("chat", "v2", registry=registry, cache_hit=how.get("cache_hit"))
    def serve():
        if how.get("report"):
            report(cache_hit=True)
        return how["result"]

    serve()
    assert hits_of(registry) == expected
    assert requests_of(registry) == 1.0  # a hit is also a request served


def test_a_failed_call_never_counts_a_cache_hit(registry):
    with pytest.raises(OSError), track_cost("chat", "v2", registry=registry) as call:
        call.cache_hit()
        raise OSError("cache backend down")
    assert hits_of(registry) == 0.0


@pytest.mark.parametrize(("value", "reason"), [
    (-1, "negative"), (-(10**400), "negative"), (-0.5, "negative"),
    (math.nan, "not_finite"), (math.inf, "not_finite"), (-math.inf, "not_finite"),
    (10**12, "too_large"), (10**400, "too_large"), (1e300, "too_large"),
    ("12", "not_a_number"), (b"12", "not_a_number"), (True, "not_a_number"), ([1], "not_a_number"),
    (object(), "not_a_number"), ({"n": 1}, "not_a_number"),
], ids=repr)
def test_a_nonsense_token_count_counts_nothing_and_is_refused_with_its_reason(registry, value, reason):
    @track_cost("chat", "v2", registry=registry)
    def complete():
        return {"usage": {"prompt_tokens": value, "completion_tokens": 5}}

    result = complete()
    assert result["usage"]["prompt_tokens"] is value
    assert tokens_of(registry, "prompt") == 0.0
    assert tokens_of(registry, "generation") == 5.0
    assert refused_of(registry, reason) == 1.0
    assert requests_of(registry) == 1.0


def test_none_token_counts_are_no_report_rather_than_a_refusal(registry):
    @track_cost("chat", "v2", registry=registry)
    def complete():
        return {"usage": {"prompt_tokens": None, "completion_tokens": None}}

    complete()
    assert tokens_of(registry, "prompt") == 0.0
    assert registry.get_sample_value("mlcost_app_refused_reports_total", {**LABELS, "reason": "not_a_number"}) is None


class Hostile:
    """A result whose every attribute and comparison raises."""

    def __getattr__(self, name):
        raise RuntimeError(f"no {name} for you")

    def __eq__(self, other):
        raise RuntimeError("no comparing")

    __hash__ = object.__hash__


def raising_callback(result):
    raise ZeroDivisionError("callback bug")


@pytest.mark.parametrize("options", [
    {}, {"usage": raising_callback}, {"cache_hit": raising_callback}, {"usage": lambda r: "nonsense"},
    {"usage": lambda r: (1, 2, 3)},
], ids=["hostile-result", "usage-raises", "cache-hit-raises", "usage-nonsense", "usage-triple"])
def test_a_hostile_result_or_callback_never_reaches_the_caller(registry, options):
    hostile = Hostile()

    @track_cost("chat", "v2", registry=registry, **options)
    def serve():
        return hostile

    assert serve() is hostile
    assert requests_of(registry) == 1.0
    assert tokens_of(registry, "prompt") == 0.0


class Broken:
    """A counter child whose every increment raises, as a full disk under PROMETHEUS_MULTIPROC_DIR would."""

    def inc(self, amount=1):
        raise OSError("No space left on device")


def test_a_failing_counter_never_reaches_the_caller(registry):
    tracker = track_cost("chat", "v2", registry=registry)
    for name in ("success", "cancelled", "busy", "prompt", "generation", "hits"):
        setattr(tracker._counters, name, Broken())
    tracker._counters._errors["ValueError"] = Broken()
    raised = ValueError("the caller's own")

    @tracker
    def serve(fail):
        if fail:
            raise raised
        return {"usage": {"prompt_tokens": 1}, "cache_hit": True}

    assert serve(False) == {"usage": {"prompt_tokens": 1}, "cache_hit": True}
    with pytest.raises(ValueError) as caught:
        serve(True)
    assert caught.value is raised
    assert current_call() is None


def test_calls_from_a_thread_pool_are_all_counted_exactly(registry):
    @track_cost("chat", "v2", registry=registry)
    def complete(i):
        if i % 10 == 0:
            raise TimeoutError(i)
        return {"usage": {"prompt_tokens": 3, "completion_tokens": 1}, "cache_hit": i % 10 == 1}

    def call(i):
        with contextlib.suppress(TimeoutError):
            complete(i)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(4000)))
    assert requests_of(registry) == 3600.0
    assert requests_of(registry, "error", "TimeoutError") == 400.0
    assert tokens_of(registry, "prompt") == 3 * 3600.0
    assert hits_of(registry) == 400.0


def test_generators_are_refused_when_decorated_not_when_called():
    def stream():
        yield 1

    with pytest.raises(TypeError, match="not generators"):
        track_cost("chat", "v2", registry=CollectorRegistry())(stream)


def test_a_bare_decorator_without_the_model_is_refused_when_decorating():
    with pytest.raises(TypeError, match=r"write @track_cost\(model=\.\.\.\)"):
        track_cost(lambda: None)


def test_exiting_a_tracker_never_entered_counts_nothing(registry):
    tracker = track_cost("chat", "v2", registry=registry)
    tracker.__exit__(None, None, None)
    assert requests_of(registry) == 0.0


token_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
    st.binary(max_size=3), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                                max_size=2))
results = st.one_of(
    st.none(), st.integers(), st.text(max_size=5),
    st.builds(lambda p, g, hit: {"usage": {"prompt_tokens": p, "completion_tokens": g}, "cache_hit": hit},
              token_values, token_values, token_values),
    st.builds(lambda p, g: SimpleNamespace(usage=SimpleNamespace(prompt_tokens=p, completion_tokens=g)),
              token_values, token_values),
    st.builds(lambda u: {"usage": u}, token_values))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(results, st.sampled_from(["return", "raise", "report"]), token_values), max_size=8))
def test_any_sequence_of_calls_keeps_every_counter_finite_and_monotonic(calls):
    registry = CollectorRegistry()

    @track_cost("chat", "v2", registry=registry)
    def tracked(result, how, reported):
        if how == "report":
            report(prompt_tokens=reported, generation_tokens=reported)
        if how == "raise":
            raise LookupError(result)
        return result

    previous = {}
    for result, how, reported in calls:
        try:
            assert tracked(result, how, reported) is result
        except LookupError as exc:
            assert how == "raise" and exc.args == (result,)
        for metric in registry.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    assert math.isfinite(sample.value) and sample.value >= previous.get(key, 0.0)
                    previous[key] = sample.value


MULTIPROCESS_WORKER = textwrap.dedent("""
    import sys
    from ml_cost_exporter.instrument import track_cost

    @track_cost("chat", "v2")
    def complete():
        return {"usage": {"prompt_tokens": 2, "completion_tokens": 3}}

    for _ in range(int(sys.argv[1])):
        complete()
""")
MULTIPROCESS_SERVER = textwrap.dedent("""
    import sys, time
    from ml_cost_exporter.instrument import start_http_server
    start_http_server(int(sys.argv[1]))
    while True:
        time.sleep(1)
""")


def test_under_prometheus_multiproc_dir_every_worker_s_calls_are_summed(tmp_path, registry):
    env = {**os.environ, "PYTHONPATH": str(REPO / "exporter"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for calls in (7, 5):  # two workers, one after the other, as a pre-fork server's would
        subprocess.run([sys.executable, "-c", MULTIPROCESS_WORKER, str(calls)], env=env, check=True)
    MultiProcessCollector(registry, path=str(tmp_path))
    assert requests_of(registry) == 12.0
    assert (tokens_of(registry, "prompt"), tokens_of(registry, "generation")) == (24.0, 36.0)

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", MULTIPROCESS_SERVER, str(port)], env=env)
    try:
        line = ('mlcost_app_requests_total{exception="",model="chat",outcome="success",version="v2"} 12.0')
        wait_until(lambda: line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text,
                   what="the multiprocess sum on the app's port")
    finally:
        server.terminate()
        server.wait(10)


def test_instrument_exports_only_counters_with_base_units(registry):
    track_cost("chat", "v2", registry=registry)(lambda: None)
    names = {metric.name: metric.type for metric in registry.collect()}
    assert names == {"mlcost_app_requests": "counter", "mlcost_app_busy_seconds": "counter",
                     "mlcost_app_tokens": "counter", "mlcost_app_cache_hits": "counter",
                     "mlcost_app_refused_reports": "counter"}
    assert instrument.REQUESTS == "mlcost_app_requests"
