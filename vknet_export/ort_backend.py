"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, one protocol for all backends.

    with OrtBackend("m.onnx", device="cpu") as be:
        out = be.step({"image": img, "prev_kernels": k, "has_prev": p})  # dict of np.ndarray

``device``: "cpu" | "cuda" | "cuda:<i>" | "tensorrt" | "tensorrt:<i>". A provider that this
onnxruntime build lacks is an error naming the providers it has (no silent CPU fallback).
``be.device`` is the torch device the graph runs on (CUDA for the cuda and tensorrt providers),
so the pipeline merges there. The model config comes from the graph's metadata unless given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vknet_core.backend import network_device
from vknet_core.config import VKNetConfig
from vknet_core.io_spec import OUTPUT_NAMES, IOSpec, TensorSpec, check_feeds, from_metadata

log = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(uint8)": "uint8",
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def providers_for(
    device: str, available: list[str], trt_cache_dir: Optional[Union[str, Path]] = None
) -> list:
    """ONNX Runtime providers (with options) for a device string; raises if one is missing."""
    kind, _, index = device.partition(":")
    dev_id = int(index) if index else 0
    if kind == "cpu":
        wanted = ["CPUExecutionProvider"]
    elif kind == "cuda":
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif kind == "tensorrt":
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        raise ValueError(f"device must be cpu, cuda[:i] or tensorrt[:i], got {device!r}")
    missing = [p for p in wanted if p not in available]
    if missing:
        raise RuntimeError(
            f"onnxruntime lacks {missing} needed for device {device!r}; available: {available}"
            " (GPU: pip install onnxruntime-gpu instead of onnxruntime)"
        )
    out: list = []
    for p in wanted:
        if p == "CUDAExecutionProvider":
            out.append((p, {"device_id": dev_id}))
        elif p == "TensorrtExecutionProvider":
            opts = {"device_id": dev_id}
            if trt_cache_dir is not None:
                os.makedirs(trt_cache_dir, exist_ok=True)
                opts.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=str(trt_cache_dir),
                    trt_timing_cache_enable=True,
                )
            out.append((p, opts))
        else:
            out.append(p)
    return out


class OrtBackend:
    """Runs an exported per-frame graph (fp32 or the int8 QDQ graph of ``export/quantize.py``)
    with ONNX Runtime (a ``vknet_core.backend.Backend``). ``spec`` is read from the session;
    ``cfg`` is given or read from the graph's metadata.

    threads: intra-op threads (None: ONNX Runtime's default, one per physical core). The pool's
    threads do not spin-wait after a run (``session.intra_op.allow_spinning`` = 0): spinning
    threads keep the cores busy and slowed the merge that follows in the same process by 60%,
    while the network itself is ~3% slower without it (issue 13).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Union[str, Path],
        device: str = "cpu",
        threads: Optional[int] = None,
        trt_cache_dir: Optional[Union[str, Path]] = None,
        cfg: Optional[VKNetConfig] = None,
    ):
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {model_path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1 (None: ORT's default), got {threads}")
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # the graph runs sequentially; no second pool
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers = providers_for(device, ort.get_available_providers(), trt_cache_dir)
        try:
            self._session: Optional[ort.InferenceSession] = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=providers
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeError(f"onnxruntime could not load {model_path}: {e}") from e
        self.device = network_device(device)
        self.spec = _spec_from_session(self._session)
        self.cfg = (
            cfg
            if cfg is not None
            else from_metadata(self._session.get_modelmeta().custom_metadata_map, str(model_path))[
                0
            ]
        )
        outs = tuple(o.name for o in self._session.get_outputs())
        if outs != OUTPUT_NAMES:
            raise ValueError(f"{model_path} outputs {list(outs)}, expected {list(OUTPUT_NAMES)}")
        log.info(
            "onnxruntime %s on %s (%s)", model_path.name, device, self._session.get_providers()
        )

    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One frame: feeds {image, prev_kernels, has_prev} -> the five outputs (numpy)."""
        if self._session is None:
            raise RuntimeError("OrtBackend is closed; create a new backend")
        check_feeds(self.spec, feeds)
        outs = self._session.run(None, dict(feeds))
        return dict(zip(OUTPUT_NAMES, outs))

    def close(self) -> None:
        self._session = None

    def __enter__(self) -> OrtBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _spec_from_session(session) -> IOSpec:
    def tensor(meta) -> TensorSpec:
        dims = tuple(d if isinstance(d, int) else str(d) for d in meta.shape)
        return TensorSpec(meta.name, dims, _ORT_DTYPES.get(meta.type, meta.type))

    inputs = tuple(tensor(m) for m in session.get_inputs())
    outputs = tuple(tensor(m) for m in session.get_outputs())
    image = next((t for t in inputs if t.name == "image"), None)
    if image is None or len(image.shape) != 4:
        raise ValueError(f"graph has no 'image' [1,H,W,3] input; inputs: {inputs}")
    H, W = image.shape[1:3]
    dynamic = not (isinstance(H, int) and isinstance(W, int))
    return IOSpec(
        inputs, outputs, H if isinstance(H, int) else 0, W if isinstance(W, int) else 0, dynamic
    )
