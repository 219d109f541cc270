"""Nothing half-written: files appear whole or not at all; failed runs remove what they made.

with atomic_path("m.onnx") as tmp:       # write to tmp; renamed onto m.onnx on success
    onnx.save(proto, tmp)
with fresh_output_dir("out/run"):        # created now; removed again if the body raises
    ...                                  # (only if this call created it)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask  # what open() would give; mkstemp alone gives 0600


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success chmod it like a normal file and rename it
    onto ``path`` (atomic on one file system); on failure remove it and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def fresh_output_dir(path: PathLike) -> Iterator[Path]:
    """Create ``path`` (and parents) for a run's outputs; if the body raises, remove every
    folder this call created, so a failed run leaves the disk as it found it."""
    path = Path(path)
    first_new = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        first_new = p
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        raise
