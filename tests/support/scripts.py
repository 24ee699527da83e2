"""The repository's generator scripts (docs/, prometheus/, mixin/, grafana/, k8s/), loaded as modules.

Several are named generate.py, so each is loaded under a name of its own rather than imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_script(relative: str) -> ModuleType:
    """The script at REPO/relative, executed as a module named after its directory and file."""
    path = REPO / relative
    name = f"{path.parent.name}_{path.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
