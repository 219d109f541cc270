"""Pick a per-frame backend by name; every one is a ``vknet_core.backend.Backend``:
``step(feeds) -> outputs``, ``close()``, ``spec``, ``device`` (torch) and ``cfg`` (the model's
``VKNetConfig``, given at construction).

    backend = make_backend("onnxruntime", "m.onnx", device="cpu")
    pipe = VideoPanopticPipeline(backend, backend.cfg)

| name          | model_path                                  | device                         |
|---------------|---------------------------------------------|--------------------------------|
| "torch"       | vknet checkpoint (.pt)                      | cpu, cuda[:i]                  |
| "onnxruntime" | ONNX from export/to_onnx.py                 | cpu, cuda[:i], tensorrt[:i]    |
| "tensorrt"    | engine (.engine) or ONNX (.onnx; the engine | cuda[:i]                       |
|               | is then built next to it on first use)      |                                |
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:  # this module stays light (no torch, no onnx) until a backend is built
    from vknet_core.backend import Backend
    from vknet_core.config import VKNetConfig

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")


def make_backend(
    name: str,
    model_path: Union[str, Path],
    device: str = "cpu",
    threads: Optional[int] = None,
    **kwargs: Any,
) -> Backend:
    """Build the backend ``name`` for ``model_path`` on ``device`` (a ``vknet_core`` Backend).

    threads: CPU intra-op threads. None = the robot defaults (README "Threads"): torch 1
    (``ROBOT_TORCH_THREADS``), onnxruntime one per core with its threads not spinning.
    kwargs: onnxruntime -> ``trt_cache_dir``; tensorrt -> ``onnx_path``, ``fp16``, ``can_build``.
    An int8 ONNX from export/quantize.py is an "onnxruntime" model like any other.
    """
    model_path = Path(model_path)
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    if not model_path.is_file():
        raise FileNotFoundError(f"{name} model file not found: {model_path}")
    if name == "torch":
        import vknet_core
        from vknet_core.runtime import ROBOT_TORCH_THREADS, TorchBackend

        return TorchBackend(
            vknet_core.load_checkpoint(model_path),
            device,
            threads=ROBOT_TORCH_THREADS if threads is None else threads,
        )
    if name == "onnxruntime":
        from vknet_export.ort_backend import OrtBackend

        return OrtBackend(model_path, device, threads=threads, **kwargs)  # cfg from metadata
    return _tensorrt(model_path, device, **kwargs)


def _tensorrt(
    model_path: Path, device: str, onnx_path: Optional[Union[str, Path]] = None, **kwargs: Any
) -> Backend:
    from vknet_export.trt_backend import TrtBackend

    if device == "cpu":
        device = "cuda:0"
    if model_path.suffix == ".onnx":
        onnx_path, engine = model_path, model_path.with_suffix(".engine")
    else:
        engine = model_path
        sibling = model_path.with_suffix(".onnx")
        onnx_path = onnx_path or (sibling if sibling.is_file() else None)
    return TrtBackend(
        engine, device, onnx_path=onnx_path, cfg=_trt_config(engine, onnx_path), **kwargs
    )


def _trt_config(engine: Path, onnx_path: Optional[Union[str, Path]]) -> VKNetConfig:
    """The model config of an engine: from its ONNX, else from its cache key."""
    if onnx_path is not None:
        from vknet_export.to_onnx import read_metadata

        return read_metadata(onnx_path)[0]
    from vknet_core.config import VKNetConfig
    from vknet_export.engine_cache import read_cache_key

    key = read_cache_key(engine) or {}
    if "model_config" not in key:
        raise ValueError(f"{engine}: no ONNX beside it and no model config in its cache key")
    return VKNetConfig.from_dict(key["model_config"])
