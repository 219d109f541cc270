"""The TensorRT engine cache: a key file beside each engine, and "use it or rebuild it".

An engine ``E.engine`` gets ``E.engine.json``: ONNX sha256, TensorRT version, GPU name and compute
capability, precision and input shapes (min/opt/max for dynamic graphs). ``ensure_engine`` returns
an engine only when its key matches the running platform; otherwise it rebuilds it with the
builder it is given, or fails with the list of differences when it may not build.

Pure Python + onnx: TensorRT itself is only touched by the builder and the platform probe
(``vknet_export.trt_build``), so everything here is tested without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

from vknet_core.atomic import write_text_atomic
from vknet_core.io_spec import META_CONFIG, META_HEIGHT, META_WIDTH

log = logging.getLogger(__name__)

KEY_FORMAT = "vknet-trt-cache-v1"
KEY_FIELDS = (
    "format",
    "onnx_sha256",
    "tensorrt_version",
    "gpu_name",
    "compute_capability",
    "precision",
    "shapes",
)
PathLike = Union[str, os.PathLike]


class EngineCacheError(RuntimeError):
    """An engine is missing or stale and may not (or cannot) be rebuilt here."""


@dataclass(frozen=True)
class Platform:
    """What an engine is tied to: TensorRT version and the GPU it was built on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings. ``min_hw``/``max_hw`` bound the optimisation profile of a dynamic graph
    (its export size is the ``opt`` shape)."""

    fp16: bool = False
    workspace_gb: float = 4.0
    min_hw: tuple[int, int] = (128, 256)
    max_hw: tuple[int, int] = (768, 2496)
    timing_cache: Optional[str] = None  # default: <engine>.timing

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"


# (onnx_path, engine_path, options) -> None; writes the engine (vknet_export.trt_build)
Builder = Callable[[Path, Path, BuildOptions], Any]


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_key_path(engine: PathLike) -> Path:
    return Path(str(engine) + ".json")


def _onnx_metadata(onnx_path: PathLike) -> tuple[Any, dict[str, str]]:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return proto, {p.key: p.value for p in proto.metadata_props}


def input_shapes(onnx_path: PathLike, options: BuildOptions) -> dict[str, Any]:
    """name -> shape (static) or {"min","opt","max"} (dynamic image); read from the ONNX inputs."""
    proto, meta = _onnx_metadata(onnx_path)
    shapes: dict[str, Any] = {}
    for v in proto.graph.input:
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim
        ]
        if all(d > 0 for d in dims):
            shapes[v.name] = dims
            continue
        if v.name != "image" or len(dims) != 4:
            raise ValueError(f"only the image H/W may be dynamic; input {v.name!r} has {dims}")
        opt = (
            int(meta.get(META_HEIGHT, options.min_hw[0])),
            int(meta.get(META_WIDTH, options.min_hw[1])),
        )
        shapes[v.name] = {
            k: [1, hw[0], hw[1], 3]
            for k, hw in (("min", options.min_hw), ("opt", opt), ("max", options.max_hw))
        }
    return shapes


def make_cache_key(
    onnx_sha256: str, platform: Platform, precision: str, shapes: dict[str, Any]
) -> dict[str, Any]:
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    return {
        "format": KEY_FORMAT,
        "onnx_sha256": onnx_sha256,
        **asdict(platform),
        "precision": precision,
        "shapes": shapes,
    }


def key_mismatches(stored: Optional[dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    """Human-readable differences between an engine's stored key and what is needed now."""
    if stored is None:
        return ["no cache key next to the engine"]
    return [
        f"{k}: engine has {stored.get(k)!r}, need {expected.get(k)!r}"
        for k in KEY_FIELDS
        if stored.get(k) != expected.get(k)
    ]


def read_cache_key(engine: PathLike) -> Optional[dict[str, Any]]:
    """The stored key, or None when absent or unreadable (treated as stale)."""
    path = cache_key_path(engine)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        if path.exists():
            log.warning("unreadable engine cache key %s: %s", path, e)
        return None
    return data if isinstance(data, dict) else None


def engine_status(engine: PathLike, expected_key: dict[str, Any]) -> list[str]:
    """Reasons the engine cannot be used as is (empty list = fresh)."""
    if not Path(engine).is_file():
        return [f"engine file {engine} does not exist"]
    return key_mismatches(read_cache_key(engine), expected_key)


def ensure_engine(
    onnx_path: Optional[PathLike],
    engine: PathLike,
    options: BuildOptions,
    platform: Platform,
    can_build: bool = True,
    builder: Optional[Builder] = None,
    force: bool = False,
) -> Path:
    """Return ``engine`` when its cache key matches ``platform``; otherwise rebuild it from
    ``onnx_path`` with ``builder`` (``force`` rebuilds a fresh one too).

    Without ``onnx_path`` or ``builder`` (or with ``can_build=False``) a stale engine is an
    EngineCacheError listing the differences. ``vknet_export.trt_build.ensure_trt_engine`` passes
    the running TensorRT + GPU and its ``build_engine``; tests pass their own.
    """
    engine = Path(engine)
    if onnx_path is None:
        stored = read_cache_key(engine)
        if not engine.is_file() or stored is None:
            raise EngineCacheError(
                f"cannot use {engine}: engine or its cache key "
                f"{cache_key_path(engine)} is missing and no ONNX was given"
            )
        expected = dict(stored, **asdict(platform))  # only the platform can be checked
    else:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
        expected = make_cache_key(
            sha256_file(onnx_path), platform, options.precision, input_shapes(onnx_path, options)
        )
    reasons = ["rebuild forced"] if force else engine_status(engine, expected)
    if not reasons:
        log.info("engine %s matches its cache key", engine)
        return engine
    if onnx_path is None or builder is None or not can_build:
        raise EngineCacheError(
            f"engine {engine} is stale and will not be rebuilt here: " + "; ".join(reasons)
        )
    log.warning("rebuilding %s: %s", engine, "; ".join(reasons))
    builder(onnx_path, engine, options)
    stored = dict(expected, model_config=_model_config(onnx_path))  # not part of the key
    write_text_atomic(cache_key_path(engine), json.dumps(stored, indent=2))
    return engine


def _model_config(onnx_path: Path) -> Optional[dict[str, Any]]:
    """The vknet config stored in the ONNX metadata (lets an engine alone rebuild ``cfg``)."""
    _, meta = _onnx_metadata(onnx_path)
    return json.loads(meta[META_CONFIG]) if META_CONFIG in meta else None
