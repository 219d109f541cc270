"""Build a TensorRT engine from the exported ONNX graph (the only module that drives TensorRT's
builder), and ``ensure_trt_engine``: the engine cache on the running TensorRT + GPU.

FP16 (video_knet.md §10.1 item 12): the layers of ``fp16_region.fp32_region`` stay FP32 --
pinned per layer on weakly typed TensorRT (<= 10), kept FP32 in the converted graph on strongly
typed TensorRT (>= 11). TensorRT is imported lazily, with an install hint when it is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional

from vknet_core.atomic import write_bytes_atomic
from vknet_export.engine_cache import (
    BuildOptions,
    EngineCacheError,
    PathLike,
    Platform,
    ensure_engine,
    input_shapes,
)
from vknet_export.fp16_region import fp32_region

log = logging.getLogger(__name__)


class TrtBuildError(RuntimeError):
    """TensorRT refused the network (parser errors) or the build failed."""


def ensure_trt_engine(
    onnx_path: Optional[PathLike],
    engine: PathLike,
    options: BuildOptions,
    can_build: bool = True,
    force: bool = False,
) -> Path:
    """``engine_cache.ensure_engine`` on this machine's TensorRT + GPU, building with
    ``build_engine``. EngineCacheError when TensorRT or a CUDA GPU is missing."""
    return ensure_engine(
        onnx_path,
        engine,
        options,
        current_platform(),
        can_build=can_build,
        builder=build_engine,
        force=force,
    )


def current_platform() -> Platform:
    """TensorRT version + GPU name/compute capability (needs tensorrt and a CUDA GPU)."""
    trt = import_trt()
    import torch

    if not torch.cuda.is_available():
        raise EngineCacheError("TensorRT engines need a CUDA GPU; torch.cuda sees none")
    idx = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(idx)
    return Platform(trt.__version__, torch.cuda.get_device_name(idx), f"{major}.{minor}")


def import_trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EngineCacheError(
            "TensorRT is not installed (GPU extra: pip install tensorrt onnxruntime-gpu); "
            f"import failed: {e}"
        ) from e
    return trt


def build_engine(onnx_path: PathLike, engine: PathLike, options: BuildOptions) -> Path:
    """Parse ``onnx_path`` and build a serialized engine into ``engine`` (atomically)."""
    import onnx

    trt = import_trt()
    onnx_path, engine = Path(onnx_path), Path(engine)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weakly_typed = hasattr(trt.BuilderFlag, "FP16")  # TensorRT <= 10; 11 is strongly typed
    proto = onnx.load(str(onnx_path))
    region = fp32_region(proto) if options.fp16 else set()
    if options.fp16 and not weakly_typed:
        proto = _to_fp16(proto, region)  # strongly typed: precision comes from the graph
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(proto.SerializeToString(), str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for e in errors:
            log.error("ONNX parser: %s", e)
        raise TrtBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n" + "\n".join(errors))
    for i in range(network.num_inputs):
        t = network.get_input(i)
        log.info("input  %s %s %s", t.name, tuple(t.shape), t.dtype)
    for i in range(network.num_outputs):
        t = network.get_output(i)
        log.info("output %s %s %s", t.name, tuple(t.shape), t.dtype)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * 2**30))
    cache_file = Path(options.timing_cache or str(engine) + ".timing")
    timing_cache = config.create_timing_cache(
        cache_file.read_bytes() if cache_file.is_file() else b""
    )
    config.set_timing_cache(timing_cache, ignore_mismatch=True)
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt)
    shapes = input_shapes(onnx_path, options)
    dynamic = {k: v for k, v in shapes.items() if isinstance(v, dict)}
    if dynamic:
        profile = builder.create_optimization_profile()
        for name, s in dynamic.items():
            profile.set_shape(name, s["min"], s["opt"], s["max"])
        config.add_optimization_profile(profile)
    if options.fp16 and weakly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if any(layer.name == n or f"[ONNX Layer: {n}]" in layer.name for n in region):
                layer.precision = trt.DataType.FLOAT
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.DataType.FLOAT)
                pinned += 1
        log.info("fp16: %d layers pinned to fp32 (un-normalised mask sums)", pinned)

    log.info(
        "building %s engine for %s (workspace %.1f GB) ...",
        options.precision,
        onnx_path.name,
        options.workspace_gb,
    )
    t0 = time.monotonic()
    with _heartbeat(t0):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f"TensorRT failed to build an engine from {onnx_path} (see log)")
    write_bytes_atomic(engine, bytes(serialized))
    write_bytes_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
    log.info(
        "built %s in %.0f s (%.1f MB)", engine, time.monotonic() - t0, engine.stat().st_size / 1e6
    )
    return engine


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 0 if flag is None else 1 << int(flag)  # TensorRT 8 needs it; 10+ ignores / lacks it


def _to_fp16(proto, keep_fp32: set[str]):
    try:
        from onnxconverter_common import float16
    except ImportError as e:
        raise TrtBuildError(
            "--fp16 with strongly typed TensorRT (>= 11) converts the ONNX graph "
            "to fp16 first: pip install onnxconverter-common==1.16.0"
        ) from e
    return float16.convert_float_to_float16(
        proto, keep_io_types=True, node_block_list=sorted(keep_fp32)
    )


class _heartbeat:
    """Logs "still building" every 5 s while the builder runs (also without IProgressMonitor)."""

    def __init__(self, t0: float, period: float = 5.0):
        self.t0, self.period, self._stop = t0, period, threading.Event()

    def __enter__(self):
        def beat():
            while not self._stop.wait(self.period):
                log.info("building... %.0f s", time.monotonic() - self.t0)

        self._thread = threading.Thread(target=beat, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _progress_monitor(trt):
    class Progress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            log.info(
                "phase %s (%d steps)%s",
                phase_name,
                num_steps,
                f" in {parent_phase}" if parent_phase else "",
            )

        def step_complete(self, phase_name, step):
            return True  # never cancel

        def phase_finish(self, phase_name):
            log.debug("phase %s done", phase_name)

    return Progress()
