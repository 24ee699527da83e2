"""The package's floors: each room imports only the rooms below it, and nothing imports in a cycle.

config/ -> cost/ -> sources/ -> sampling -> state -> runtime -> exposition/ -> cli, with the
decision CLI (decide/) and the price-file importers (pricefiles/) beside the exporter's top: they
read config/ and cost/ and talk to peers, and never reach into sampling, the runtime or the HTTP server.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "exporter" / "ml_cost_exporter"
# Each room and the rooms it may import (itself always allowed). Modules at the package root are rooms too.
ALLOWED = {
    "units": set(),
    "httpclient": set(),
    "instrument": set(),
    "config": {"httpclient"},
    "storage": {"config"},
    "cost": {"config"},
    "sources": {"config", "cost", "httpclient"},  # cost: the allocation types discovery fills in
    "sampling": {"config", "cost", "sources"},
    "state": {"config", "cost", "sampling", "sources"},
    "summary": {"config", "sources", "state"},
    "runtime": {"config", "cost", "sampling", "sources", "state", "storage", "summary"},
    "exposition": {"config", "cost", "sampling", "state"},
    "cli": {"config", "exposition", "runtime", "sampling", "__init__"},
    "__main__": {"cli"},
    "__init__": set(),
    "pricefiles": {"config", "httpclient"},
    "decide": {"config", "cost", "httpclient", "pricefiles"},
}


def room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_rooms(path: Path) -> set[str]:
    """Rooms of the package that a module imports, at any depth of the module (lazy imports count)."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "ml_cost_exporter":
                continue
            is_room = len(parts) > 1 and ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file())
            rooms.add(parts[1] if is_room else "__init__")
    return rooms


def test_every_room_imports_only_the_rooms_below_it():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = room(path)
        assert here in ALLOWED, f"{path.relative_to(PACKAGE)} is in a room the layering table does not know"
        for other in imported_rooms(path) - {here, "__init__"} - ALLOWED[here]:  # __init__: the version
            violations.append(f"{path.relative_to(PACKAGE)} imports {other}")
    assert violations == []


def test_the_rooms_form_no_cycle():
    edges = {name: set(allowed) for name, allowed in ALLOWED.items()}
    visiting, done = set(), set()

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join((*trail, node))}"
        if node in done:
            return
        visiting.add(node)
        for nxt in edges.get(node, ()):
            visit(nxt, (*trail, node))
        visiting.discard(node)
        done.add(node)

    for name in edges:
        visit(name, ())


def test_the_layering_check_catches_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from ml_cost_exporter.runtime import Runtime\n")
    assert imported_rooms(module) == {"runtime"}
