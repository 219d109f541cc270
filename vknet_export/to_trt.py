"""Build a TensorRT engine from the exported ONNX graph, with a cache key next to it.

    python export/to_trt.py --onnx m.onnx --output m.engine [--fp16] [--workspace 4] [--build-only]

The engine ``E.engine`` gets ``E.engine.json``: ONNX sha256, TensorRT version, GPU name and
compute capability, precision and input shapes (min/opt/max for dynamic graphs). ``ensure_engine``
(used by the TensorRT backend and by this CLI) loads an engine only when its key matches the
running platform; otherwise it rebuilds it, or fails with the list of differences when it may
not build. TensorRT is imported lazily: everything but ``build_engine`` works without it.

FP16 (video_knet.md §10.1 item 12): the hard-mask pooling produces un-normalised sums over up to
h*w pixels that can exceed the fp16 range. Every layer from such a sum up to and including the
next normalisation stays in FP32 (``fp32_region``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

log = logging.getLogger(__name__)

KEY_FORMAT = "vknet-trt-cache-v1"
KEY_FIELDS = ("format", "onnx_sha256", "tensorrt_version", "gpu_name", "compute_capability",
              "precision", "shapes")
PathLike = Union[str, os.PathLike]


class EngineCacheError(RuntimeError):
    """An engine is missing or stale and may not (or cannot) be rebuilt here."""


class TrtBuildError(RuntimeError):
    """TensorRT refused the network (parser errors) or the build failed."""


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


# ----------------------------------------------------------------------------- cache key (pure)


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_key_path(engine: PathLike) -> Path:
    return Path(str(engine) + ".json")


def input_shapes(onnx_path: PathLike, options: BuildOptions) -> dict[str, Any]:
    """name -> shape (static) or {"min","opt","max"} (dynamic image); read from the ONNX inputs."""
    import onnx

    from vknet_export.to_onnx import META_HEIGHT, META_WIDTH

    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    shapes: dict[str, Any] = {}
    for v in proto.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else -1
                for d in v.type.tensor_type.shape.dim]
        if all(d > 0 for d in dims):
            shapes[v.name] = dims
            continue
        if v.name != "image" or len(dims) != 4:
            raise ValueError(f"only the image H/W may be dynamic; input {v.name!r} has {dims}")
        opt = (int(meta.get(META_HEIGHT, options.min_hw[0])),
               int(meta.get(META_WIDTH, options.min_hw[1])))
        shapes[v.name] = {k: [1, hw[0], hw[1], 3] for k, hw in
                          (("min", options.min_hw), ("opt", opt), ("max", options.max_hw))}
    return shapes


def make_cache_key(onnx_sha256: str, platform: Platform, precision: str,
                   shapes: dict[str, Any]) -> dict[str, Any]:
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    return {"format": KEY_FORMAT, "onnx_sha256": onnx_sha256, **asdict(platform),
            "precision": precision, "shapes": shapes}


def key_mismatches(stored: Optional[dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    """Human-readable differences between an engine's stored key and what is needed now."""
    if stored is None:
        return ["no cache key next to the engine"]
    return [f"{k}: engine has {stored.get(k)!r}, need {expected.get(k)!r}"
            for k in KEY_FIELDS if stored.get(k) != expected.get(k)]


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


def write_atomic(path: PathLike, data: bytes) -> Path:
    """Write bytes through a temp file in the same folder, then rename (nothing partial)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def engine_status(engine: PathLike, expected_key: dict[str, Any]) -> list[str]:
    """Reasons the engine cannot be used as is (empty list = fresh)."""
    if not Path(engine).is_file():
        return [f"engine file {engine} does not exist"]
    return key_mismatches(read_cache_key(engine), expected_key)


def ensure_engine(onnx_path: Optional[PathLike], engine: PathLike, options: BuildOptions,
                  platform: Optional[Platform] = None, can_build: bool = True,
                  builder: Optional[Callable[[Path, Path, BuildOptions], None]] = None) -> Path:
    """Return ``engine`` when its cache key matches; otherwise rebuild it from ``onnx_path``.

    Without ``onnx_path`` (or with ``can_build=False``) a stale engine is an EngineCacheError
    listing the differences. ``platform``/``builder`` default to the running TensorRT + GPU and
    ``build_engine``; tests pass their own.
    """
    engine = Path(engine)
    platform = platform or current_platform()
    if onnx_path is None:
        stored = read_cache_key(engine)
        if not engine.is_file() or stored is None:
            raise EngineCacheError(f"cannot use {engine}: engine or its cache key "
                                   f"{cache_key_path(engine)} is missing and no ONNX was given")
        expected = dict(stored, **asdict(platform))  # only the platform can be checked
    else:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
        expected = make_cache_key(sha256_file(onnx_path), platform, options.precision,
                                  input_shapes(onnx_path, options))
    reasons = engine_status(engine, expected)
    if not reasons:
        log.info("engine %s matches its cache key", engine)
        return engine
    if onnx_path is None or not can_build:
        raise EngineCacheError(f"engine {engine} is stale and will not be rebuilt here: "
                               + "; ".join(reasons))
    log.warning("rebuilding %s: %s", engine, "; ".join(reasons))
    (builder or build_engine)(onnx_path, engine, options)
    stored = dict(expected, model_config=_model_config(onnx_path))  # not part of the key
    write_atomic(cache_key_path(engine), json.dumps(stored, indent=2).encode())
    return engine


def _model_config(onnx_path: Path) -> Optional[dict[str, Any]]:
    """The vknet config stored in the ONNX metadata (lets an engine alone rebuild ``cfg``)."""
    import onnx

    from vknet_export.to_onnx import META_CONFIG

    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False)
            .metadata_props}
    return json.loads(meta[META_CONFIG]) if META_CONFIG in meta else None


# ----------------------------------------------------------------------------- fp16 safety (pure)

_NORMS = frozenset({"LayerNormalization", "InstanceNormalization", "GroupNormalization"})
_PASS_THROUGH = frozenset({"Reshape", "Transpose", "Flatten", "Unsqueeze", "Squeeze"})


def fp32_region(model) -> set[str]:
    """ONNX node names that must stay FP32: each MatMul fed by a hard mask (Greater -> Cast
    [-> Reshape ...]) -- an un-normalised sum -- and everything downstream of it up to and
    including the next normalisation node."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def from_hard_mask(tensor: str) -> bool:
        n = producer.get(tensor)
        while n is not None and n.op_type in _PASS_THROUGH:
            n = producer.get(n.input[0])
        return (n is not None and n.op_type == "Cast"
                and producer.get(n.input[0]) is not None
                and producer[n.input[0]].op_type == "Greater")

    seeds = [n for n in model.graph.node
             if n.op_type == "MatMul" and any(from_hard_mask(i) for i in n.input)]
    region: set[str] = set()
    stack = list(seeds)
    while stack:
        n = stack.pop()
        if n.name in region:
            continue
        region.add(n.name)
        if n.op_type in _NORMS:
            continue
        for o in n.output:
            stack.extend(consumers.get(o, []))
    return region


# ----------------------------------------------------------------------------- TensorRT


def current_platform() -> Platform:
    """TensorRT version + GPU name/compute capability (needs tensorrt and a CUDA GPU)."""
    trt = _import_trt()
    import torch

    if not torch.cuda.is_available():
        raise EngineCacheError("TensorRT engines need a CUDA GPU; torch.cuda sees none")
    idx = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(idx)
    return Platform(trt.__version__, torch.cuda.get_device_name(idx), f"{major}.{minor}")


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EngineCacheError(
            "TensorRT is not installed (GPU extra: pip install tensorrt onnxruntime-gpu); "
            f"import failed: {e}") from e
    return trt


def build_engine(onnx_path: PathLike, engine: PathLike, options: BuildOptions) -> Path:
    """Parse ``onnx_path`` and build a serialized engine into ``engine`` (atomically)."""
    import onnx

    trt = _import_trt()
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
    timing_cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file()
                                              else b"")
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

    log.info("building %s engine for %s (workspace %.1f GB) ...", options.precision,
             onnx_path.name, options.workspace_gb)
    t0 = time.monotonic()
    with _heartbeat(t0):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f"TensorRT failed to build an engine from {onnx_path} (see log)")
    write_atomic(engine, bytes(serialized))
    write_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
    log.info("built %s in %.0f s (%.1f MB)", engine, time.monotonic() - t0,
             engine.stat().st_size / 1e6)
    return engine


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 0 if flag is None else 1 << int(flag)  # TensorRT 8 needs it; 10+ ignores / lacks it


def _to_fp16(proto, keep_fp32: set[str]):
    try:
        from onnxconverter_common import float16
    except ImportError as e:
        raise TrtBuildError("--fp16 with strongly typed TensorRT (>= 11) converts the ONNX graph "
                            "to fp16 first: pip install onnxconverter-common==1.16.0") from e
    return float16.convert_float_to_float16(proto, keep_io_types=True,
                                            node_block_list=sorted(keep_fp32))


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
            log.info("phase %s (%d steps)%s", phase_name, num_steps,
                     f" in {parent_phase}" if parent_phase else "")

        def step_complete(self, phase_name, step):
            return True  # never cancel

        def phase_finish(self, phase_name):
            log.debug("phase %s done", phase_name)

    return Progress()


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="ONNX graph from export/to_onnx.py")
    p.add_argument("--output", type=Path, required=True, help="engine path (.engine)")
    p.add_argument("--fp16", action="store_true", help="fp16 (mask sums stay fp32)")
    p.add_argument("--workspace", type=float, default=4.0, help="builder workspace in GB")
    p.add_argument("--timing-cache", help="timing cache file (default <engine>.timing)")
    p.add_argument("--min-hw", type=int, nargs=2, default=(128, 256),
                   help="dynamic graphs: smallest H W of the optimisation profile")
    p.add_argument("--max-hw", type=int, nargs=2, default=(768, 2496),
                   help="dynamic graphs: largest H W of the optimisation profile")
    p.add_argument("--build-only", action="store_true",
                   help="build (or confirm the cached engine) and exit without a test run")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache key matches")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    options = BuildOptions(args.fp16, args.workspace, tuple(args.min_hw), tuple(args.max_hw),
                           args.timing_cache)
    try:
        if args.force and cache_key_path(args.output).exists():
            cache_key_path(args.output).unlink()
        engine = ensure_engine(args.onnx, args.output, options)
        if not args.build_only:
            from vknet_export.io_spec import dummy_inputs
            from vknet_export.trt_backend import TrtBackend

            with TrtBackend(engine, onnx_path=args.onnx, fp16=args.fp16) as be:
                out = be.step(dummy_inputs(be.spec.concrete(*_run_hw(be.spec))))
            print("test run:", {k: list(v.shape) for k, v in out.items()})
    except (EngineCacheError, TrtBuildError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    print(f"engine {engine}, cache key {cache_key_path(engine)}")
    return 0


def _run_hw(spec) -> tuple[int, int]:
    return (spec.height, spec.width) if spec.height else (256, 512)


if __name__ == "__main__":
    raise SystemExit(main())
