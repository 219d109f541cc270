"""The code checks CI runs, as a user runs them from the repository root: the import layering
(import-linter, contracts in pyproject.toml), ruff's lint rules and ruff's formatting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    """The tool installed beside this Python (the project's venv), else the one on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -r requirements.txt)")
    return found


def _run(*cmd: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, not an installed copy
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(cmd[1:]) or cmd[0]}` failed (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


def test_import_layering_contracts_are_kept():
    """vknet_ros -> vknet_export -> vknet_core <- vknet_training; training uses export only
    through backends.make_backend; vknet_ros never imports training; vknet_core no ROS."""
    _run(_tool("lint-imports"), "--no-cache")


def test_ruff_lint_is_clean():
    _run(_tool("ruff"), "check", "--no-cache", "--output-format", "concise", ".")


def test_ruff_format_is_clean():
    _run(_tool("ruff"), "format", "--check", "--no-cache", ".")
