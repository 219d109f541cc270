"""Where the read-only shared reference data lives: ``<repo>/../shared`` (CI clones the repo
with ``shared/`` beside it). ``VKNET_SHARED`` overrides the location."""

from __future__ import annotations

import os
from pathlib import Path

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
