"""Count what a Python inference service does, in one line, for ml-cost-exporter's `python` preset.

    from ml_cost_exporter.instrument import track_cost

    @track_cost(model="chat", version="v2")
    def answer(prompt): ...

It depends on prometheus_client alone and imports nothing else of the exporter. The counters go
to the app's registry (prometheus_client's default unless one is given); docs/instrument.md has
the recipe, multiprocess servers included. Whatever a call does or returns, the bookkeeping never
raises into it and the counters stay finite and monotonic.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import operator
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client import start_http_server as _start_http_server

__all__ = ["Call", "current_call", "report", "start_http_server", "track_cost"]

REQUESTS = "mlcost_app_requests"
BUSY_SECONDS = "mlcost_app_busy_seconds"
TOKENS = "mlcost_app_tokens"
CACHE_HITS = "mlcost_app_cache_hits"
REFUSED = "mlcost_app_refused_reports"
# More tokens than this in one call is a bug in the report, not work done.
MAX_TOKENS_PER_CALL = 1e9
# Distinct exception class names kept as label values per tracker; later ones read "other".
MAX_EXCEPTION_NAMES = 20
DEFAULT_VERSION = "latest"  # the exporter's default model version

F = TypeVar("F", bound=Callable[..., Any])
UsageCallback = Callable[[Any], Any]
CacheHitCallback = Callable[[Any], Any]


class _Families:
    """The counters of one registry, created once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("model", "version")
        self.requests = Counter(REQUESTS, "Calls of tracked functions by outcome (success, error, cancelled).",
                                (*labels, "outcome", "exception"), registry=registry)
        self.busy = Counter(BUSY_SECONDS, "Wall-clock seconds spent inside tracked calls, all outcomes.",
                            labels, registry=registry)
        self.tokens = Counter(TOKENS, "Tokens reported by tracked calls, by kind (prompt, generation).",
                              (*labels, "kind"), registry=registry)
        self.cache_hits = Counter(CACHE_HITS, "Successful tracked calls answered from a cache (also in requests).",
                                  labels, registry=registry)
        self.refused = Counter(REFUSED, "Token or cache reports refused, by reason; they count nothing.",
                               (*labels, "reason"), registry=registry)
        self._models: dict[tuple[str, str], _ModelCounters] = {}
        self._lock = threading.Lock()

    def model(self, model: str, version: str) -> _ModelCounters:
        """One model's counters, created (at zero) on first use and shared by its trackers."""
        with self._lock:
            counters = self._models.get((model, version))
            if counters is None:
                counters = self._models[(model, version)] = _ModelCounters(self, model, version)
            return counters


class _ModelCounters:
    """The label children of one (model, version), resolved once so a call only increments."""

    def __init__(self, families: _Families, model: str, version: str) -> None:
        self.families, self.model, self.version = families, model, version
        self.success = families.requests.labels(model, version, "success", "")
        self.cancelled = families.requests.labels(model, version, "cancelled", "CancelledError")
        self.busy = families.busy.labels(model, version)
        self.prompt = families.tokens.labels(model, version, "prompt")
        self.generation = families.tokens.labels(model, version, "generation")
        self.hits = families.cache_hits.labels(model, version)
        self._errors: dict[str, Any] = {}
        self._lock = threading.Lock()

    def error(self, name: str) -> Any:
        """The error counter for an exception class name; past MAX_EXCEPTION_NAMES names, "other"."""
        counter = self._errors.get(name)
        if counter is None:
            with self._lock:
                if name not in self._errors and len(self._errors) >= MAX_EXCEPTION_NAMES:
                    name = "other"
                counter = self._errors.get(name)
                if counter is None:
                    counter = self._errors[name] = self.families.requests.labels(
                        self.model, self.version, "error", name)
        return counter

    def refuse(self, reason: str) -> None:
        self.families.refused.labels(self.model, self.version, reason).inc()


_families_lock = threading.Lock()
_families_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        families = _families_by_registry.get(registry)
        if families is None:
            families = _families_by_registry[registry] = _Families(registry)
        return families


def _as_number(value: Any) -> int | float | None:
    """An int or float from a number-like value (numpy scalars included); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    kind = type(value)
    try:
        if hasattr(kind, "__index__"):
            return operator.index(value)
        if hasattr(kind, "__float__") and not isinstance(value, str | bytes):
            number = float(value)
            return number if isinstance(number, float) else None
    except Exception:
        return None
    return None


def _token_count(value: Any) -> tuple[float, str | None]:
    """A reported token count and why it is refused (None: accepted); None counts nothing."""
    if type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL:  # the common case, first
        return value, None
    if value is None:
        return 0.0, None
    number = _as_number(value)
    if number is None:
        return 0.0, "not_a_number"
    if isinstance(number, int):  # compared before converting: a huge int has no float
        if number < 0:
            return 0.0, "negative"
        return (0.0, "too_large") if number > MAX_TOKENS_PER_CALL else (float(number), None)
    if math.isnan(number) or math.isinf(number):
        return 0.0, "not_finite"
    if number < 0:
        return 0.0, "negative"
    if number > MAX_TOKENS_PER_CALL:
        return 0.0, "too_large"
    return number, None


def _field(container: Any, *names: str) -> Any:
    """The first of `names` present in a mapping or as an attribute; None when none is."""
    for name in names:
        if type(container) is dict or isinstance(container, Mapping):
            value = container.get(name)
        else:
            value = getattr(container, name, None)
        if value is not None:
            return value
    return None


def _usage_of(result: Any) -> tuple[Any, Any]:
    """(prompt, generation) from an OpenAI-like `usage` (attribute or key); (None, None) if absent."""
    is_mapping = type(result) is dict or isinstance(result, Mapping)
    usage = result.get("usage") if is_mapping else getattr(result, "usage", None)
    if usage is None:
        return None, None
    return (_field(usage, "prompt_tokens", "input_tokens"),
            _field(usage, "completion_tokens", "output_tokens"))


def _cache_hit_of(result: Any) -> bool:
    flag = result.get("cache_hit") if isinstance(result, Mapping) else getattr(result, "cache_hit", None)
    return flag is True


class Call:
    """One tracked call in progress: what it reports before it ends."""

    __slots__ = ("cached", "generation_tokens", "prompt_tokens", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.prompt_tokens: Any = None
        self.generation_tokens: Any = None
        self.cached = False

    def tokens(self, prompt: Any = None, generation: Any = None) -> None:
        """Report the call's tokens; a later report adds to an earlier one."""
        self.prompt_tokens = _add(self.prompt_tokens, prompt)
        self.generation_tokens = _add(self.generation_tokens, generation)

    def cache_hit(self, hit: bool = True) -> None:
        """Report that the call was answered from a cache."""
        self.cached = hit is True


class _Several(tuple):
    """Several reports of one kind of token in one call, validated one by one when it ends."""


def _add(previous: Any, value: Any) -> Any:
    if previous is None:
        return value
    if value is None:
        return previous
    return _Several((*previous, value)) if type(previous) is _Several else _Several((previous, value))


_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("mlcost_current_call", default=None)


def current_call() -> Call | None:
    """The innermost tracked call running in this context, or None outside any."""
    return _current.get()


def report(prompt_tokens: Any = None, generation_tokens: Any = None, cache_hit: bool = False) -> None:
    """From inside a tracked function: report its tokens or a cache hit; outside one, does nothing."""
    call = _current.get()
    if call is not None:
        call.tokens(prompt_tokens, generation_tokens)
        if cache_hit is True:
            call.cache_hit()


class _Tracker:
    """What `track_cost(...)` returns: a decorator and a (sync or async) context manager."""

    def __init__(self, model: str, version: str, registry: CollectorRegistry, usage: UsageCallback | None,
                 cache_hit: CacheHitCallback | None, clock: Callable[[], float]) -> None:
        self._usage, self._cache_hit, self._clock = usage, cache_hit, clock
        self._counters = _families(registry).model(str(model), str(version))
        self._entered: contextvars.ContextVar[tuple[tuple[Call, contextvars.Token], ...]] | None = None

    # -- the decorator --

    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError("track_cost times functions and coroutines, not generators: "
                            "use `with track_cost(...)` around the work instead")
        if inspect.iscoroutinefunction(func):
            return self._wrap_async(func)
        return self._wrap_sync(func)

    def _wrap_sync(self, func: F) -> F:
        @functools.wraps(func)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            call = Call(self._clock())
            token = _current.set(call)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._failed(call, exc, token)
                raise
            self._succeeded(call, result, token)
            return result
        return tracked  # type: ignore[return-value]

    def _wrap_async(self, func: F) -> F:
        @functools.wraps(func)
        async def tracked(*args: Any, **kwargs: Any) -> Any:
            call = Call(self._clock())
            token = _current.set(call)
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                self._failed(call, exc, token)
                raise
            self._succeeded(call, result, token)
            return result
        return tracked  # type: ignore[return-value]

    # -- the context manager --

    def __enter__(self) -> Call:
        if self._entered is None:  # per context, so one tracker may be entered by many tasks at once
            self._entered = contextvars.ContextVar(f"mlcost_tracker_{id(self)}", default=())
        call = Call(self._clock())
        token = _current.set(call)
        self._entered.set((*self._entered.get(), (call, token)))
        return call

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        entered = self._entered.get() if self._entered is not None else ()
        if not entered:
            return  # exited more often than entered: nothing to count
        call, token = entered[-1]
        self._entered.set(entered[:-1])
        if exc is None:
            self._succeeded(call, None, token)
        else:
            self._failed(call, exc, token)

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- bookkeeping: never raises --

    def _succeeded(self, call: Call, result: Any, token: contextvars.Token) -> None:
        try:
            self._end(call, token)
            self._counters.success.inc()
            self._count_tokens(call, result)
            if call.cached or self._reported_hit(result):
                self._counters.hits.inc()
        except Exception:  # the caller's result matters more than one count
            pass

    def _failed(self, call: Call, exc: BaseException, token: contextvars.Token) -> None:
        try:
            self._end(call, token)
            if isinstance(exc, asyncio.CancelledError):
                self._counters.cancelled.inc()
            else:
                self._counters.error(type(exc).__name__).inc()
            self._count_tokens(call, None)  # tokens reported before the failure were work done
        except Exception:  # the caller's exception must propagate unchanged
            pass

    def _end(self, call: Call, token: contextvars.Token) -> None:
        try:  # noqa: SIM105 - contextlib.suppress would cost more than the rest of the call
            _current.reset(token)
        except (ValueError, RuntimeError):  # ended in another context, or the token was used
            pass
        elapsed = self._clock() - call.start
        if 0 < elapsed < math.inf:  # an injected clock may go back or misbehave
            self._counters.busy.inc(elapsed)

    def _count_tokens(self, call: Call, result: Any) -> None:
        prompt, generation = call.prompt_tokens, call.generation_tokens
        if result is not None and prompt is None and generation is None:
            prompt, generation = self._reported_usage(result)
        if prompt is not None:
            self._count(self._counters.prompt, prompt)
        if generation is not None:
            self._count(self._counters.generation, generation)

    def _count(self, counter: Any, reported: Any) -> None:
        for value in reported if type(reported) is _Several else (reported,):
            number, refused = _token_count(value)
            if refused is not None:
                self._counters.refuse(refused)
            elif number:
                counter.inc(number)

    def _reported_usage(self, result: Any) -> tuple[Any, Any]:
        if self._usage is None:
            return _usage_of(result)
        try:
            reported = self._usage(result)
        except Exception:
            self._counters.refuse("callback_raised")
            return None, None
        if reported is None:
            return None, None
        if isinstance(reported, Mapping):
            return reported.get("prompt"), reported.get("generation")
        if isinstance(reported, tuple) and len(reported) == 2:
            return reported
        self._counters.refuse("not_a_number")
        return None, None

    def _reported_hit(self, result: Any) -> bool:
        if self._cache_hit is None:
            return result is not None and _cache_hit_of(result)
        try:
            return self._cache_hit(result) is True
        except Exception:
            self._counters.refuse("callback_raised")
            return False


def track_cost(model: str, version: str = DEFAULT_VERSION, *, registry: CollectorRegistry = REGISTRY,
               usage: UsageCallback | None = None, cache_hit: CacheHitCallback | None = None,
               clock: Callable[[], float] = time.perf_counter) -> _Tracker:
    """Count calls, busy seconds, tokens and cache hits of a function or a block, for one model.

    Tokens come from the call's reports (`Call.tokens`, `report`), else from `usage(result)` (a
    `(prompt, generation)` pair or a mapping with those keys), else from an OpenAI-like
    `result.usage`. A hit comes from `Call.cache_hit`, `report`, `cache_hit(result)` or
    `result.cache_hit is True`.
    """
    if callable(model):
        raise TypeError("track_cost needs the model: write @track_cost(model=...), not @track_cost")
    return _Tracker(model, version, registry, usage, cache_hit, clock)


def start_http_server(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> Any:
    """Serve the counters on their own port; under PROMETHEUS_MULTIPROC_DIR, every worker's summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return _start_http_server(port, addr=addr, registry=registry)
