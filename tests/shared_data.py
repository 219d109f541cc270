"""Where the read-only shared reference data lives: ``<repo>/../shared`` (CI clones the repo
with ``shared/`` beside it). ``VKNET_SHARED`` overrides the location."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

SHARED = Path(
    os.environ.get("VKNET_SHARED", Path(__file__).resolve().parents[1].parent / "shared")
)


def require_shared(rel: str) -> Path:
    """Path of a shared file, or skip the test with the reason when it is absent."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"shared reference data not found: {p} (set VKNET_SHARED)")
    return p


def import_shared(rel: str) -> ModuleType:
    """Import a Python file of the shared data (``parity/parity_io.py``, the recipes) by path;
    skip the test when it is absent."""
    path = require_shared(rel)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
