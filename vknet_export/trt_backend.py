"""TensorRT backend: IO-tensor API (``set_tensor_address`` + ``execute_async_v3``) on one CUDA
stream, with device buffers allocated once and reused across frames (torch owns the memory).

    with TrtBackend("m.engine", onnx_path="m.onnx") as be:   # rebuilds a stale engine
        out = be.step(feeds)                                   # dict of np.ndarray

The engine's cache key (``vknet_export.engine_cache``) is checked before deserialisation, so a
TensorRT upgrade or another GPU rebuilds the engine instead of crashing. The model config is
given at construction (``backends.make_backend`` reads it from the ONNX or the cache key).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vknet_core.backend import network_device
from vknet_core.config import VKNetConfig
from vknet_core.io_spec import OUTPUT_NAMES, IOSpec, TensorSpec, check_feeds
from vknet_export.engine_cache import BuildOptions, EngineCacheError
from vknet_export.trt_build import ensure_trt_engine, import_trt

log = logging.getLogger(__name__)


class TrtBackend:
    """A TensorRT engine as a ``vknet_core.backend.Backend`` (``cfg``: the model's config;
    read from the ONNX metadata when None and ``onnx_path`` is given)."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: Union[str, Path],
        device: str = "cuda:0",
        onnx_path: Optional[Union[str, Path]] = None,
        fp16: bool = False,
        can_build: bool = True,
        options: Optional[BuildOptions] = None,
        cfg: Optional[VKNetConfig] = None,
    ):
        import torch

        trt = import_trt()
        if not str(device).startswith("cuda") or not torch.cuda.is_available():
            raise EngineCacheError(
                f"TensorRT needs a CUDA device, got device={device!r} "
                f"(cuda available: {torch.cuda.is_available()})"
            )
        if cfg is None:
            if onnx_path is None:
                raise ValueError(f"TrtBackend({engine_path}): give cfg or onnx_path")
            from vknet_export.to_onnx import read_metadata

            cfg = read_metadata(onnx_path)[0]
        self.cfg = cfg
        self._torch, self._trt = torch, trt
        self.device = network_device(device)
        torch.cuda.set_device(self.device)
        options = options or BuildOptions(fp16=fp16)
        engine_path = ensure_trt_engine(onnx_path, engine_path, options, can_build=can_build)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise EngineCacheError(
                f"TensorRT could not deserialize {engine_path}; rebuild it "
                "with export/to_trt.py --force"
            )
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(self.device)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [n for n in names if is_input[n]]
        self._outputs = [n for n in names if not is_input[n]]
        if tuple(self._outputs) != OUTPUT_NAMES and set(self._outputs) != set(OUTPUT_NAMES):
            raise ValueError(f"engine outputs {self._outputs}, expected {list(OUTPUT_NAMES)}")
        self._dtypes = {
            n: _torch_dtype(torch, trt, self._engine.get_tensor_dtype(n)) for n in names
        }
        self.spec = self._make_spec(names, is_input)
        self._buffers: dict[str, torch.Tensor] = {}
        self._host: dict[str, torch.Tensor] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        log.info(
            "TensorRT %s: %s on %s",
            trt.__version__,
            Path(engine_path).name,
            torch.cuda.get_device_name(self.device),
        )

    def _make_spec(self, names, is_input) -> IOSpec:
        def spec(n: str) -> TensorSpec:
            dims = tuple(
                int(d) if d >= 0 else f"dim{i}"
                for i, d in enumerate(self._engine.get_tensor_shape(n))
            )
            return TensorSpec(n, dims, str(self._dtypes[n]).replace("torch.", ""))

        inputs = tuple(spec(n) for n in self._inputs)
        outputs = tuple(spec(n) for n in OUTPUT_NAMES)
        H, W = next(t for t in inputs if t.name == "image").shape[1:3]
        static = isinstance(H, int) and isinstance(W, int)
        return IOSpec(inputs, outputs, H if static else 0, W if static else 0, not static)

    def _bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        """(Re)allocate device buffers only when an input shape changes; set addresses."""
        torch = self._torch
        shapes = {n: tuple(feeds[n].shape) for n in self._inputs}
        if shapes == self._shapes:
            return
        for n in self._inputs:
            if not self._context.set_input_shape(n, shapes[n]):
                raise ValueError(
                    f"input {n!r} shape {list(shapes[n])} is outside the engine's "
                    "optimisation profile"
                )
        for n in self._inputs + self._outputs:
            shape = shapes[n] if n in shapes else tuple(self._context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"TensorRT could not resolve the shape of {n!r}: {shape}")
            self._buffers[n] = torch.empty(shape, dtype=self._dtypes[n], device=self.device)
            self._host[n] = torch.empty(shape, dtype=self._dtypes[n], pin_memory=True)
            self._context.set_tensor_address(n, self._buffers[n].data_ptr())
        self._shapes = shapes

    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._context is None:
            raise RuntimeError("TrtBackend is closed; create a new backend")
        check_feeds(self.spec, feeds)
        self._bind(feeds)
        torch = self._torch
        with torch.cuda.stream(self._stream):
            for n in self._inputs:
                self._host[n].numpy()[...] = feeds[n]
                self._buffers[n].copy_(self._host[n], non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            for n in self._outputs:
                self._host[n].copy_(self._buffers[n], non_blocking=True)
        self._stream.synchronize()
        return {n: self._host[n].numpy().astype(np.float32, copy=True) for n in OUTPUT_NAMES}

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._buffers.clear()
        self._host.clear()

    def __enter__(self) -> TrtBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _torch_dtype(torch, trt, dt):
    D = trt.DataType  # member names are stable across TensorRT 8-11; aliases vary
    table = {
        D.FLOAT: torch.float32,
        D.HALF: torch.float16,
        D.UINT8: torch.uint8,
        D.INT32: torch.int32,
        D.INT64: torch.int64,
        D.BOOL: torch.bool,
    }
    if dt not in table:
        raise ValueError(f"unsupported TensorRT tensor dtype {dt}")
    return table[dt]
