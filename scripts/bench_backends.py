"""Per-frame latency: PyTorch eager vs ONNX Runtime (and TensorRT where present), one run.

    python scripts/bench_backends.py                        # tiny + kitti_step_r50 at 384x1248
    python scripts/bench_backends.py --presets tiny --size 128 256 --frames 5
    python scripts/bench_backends.py --device cuda --fp16   # + torch.compile / CUDA graphs,
                                                            #   fp16, ORT CUDA EP, TensorRT

Rows: ``torch`` (eager, BatchNorm folded), ``onnxruntime`` (fp32), ``onnxruntime_int8`` (the
int8 QDQ graph of ``vknet_export.quantize``, recipe ``conv``, calibrated on ``--int8-calib``
frames of the clip; CPU), and on CUDA ``torch_compile`` (``torch.compile``, inductor),
``torch_cudagraphs`` (``mode="reduce-overhead"``: inductor + CUDA graphs), each also ``_fp16``
(autocast) with ``--fp16``, and ORT CUDA / TensorRT where installed.
Models use seeded random weights (latency does not depend on them). Each backend runs the
synthetic clip frame by frame with the state fed back, interleaved (frame i on every backend,
then frame i + 1), so the ratios hold on a loaded machine; the first ``--warmup`` frames are not
timed. Prints a table (median / p90 ms per frame and the speed-up over PyTorch eager), then the
results as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger("bench_backends")


@dataclass
class Timing:
    preset: str
    size: str
    backend: str
    device: str
    median_ms: float
    p90_ms: float
    speedup_vs_torch: float = float("nan")


def time_backend(backend: Any, frames: list[np.ndarray], cfg: Any, warmup: int) -> list[float]:
    """Seconds per frame (after ``warmup`` frames), state fed back like the pipeline does."""
    return time_interleaved({"b": backend}, frames, cfg, warmup)["b"]


def time_interleaved(
    backends: dict[str, Any], frames: list[np.ndarray], cfg: Any, warmup: int
) -> dict[str, list[float]]:
    """Seconds per frame for every backend, frame i of all of them before frame i + 1 (so a
    load change on a shared machine hits all alike); each keeps its own state."""
    zero = {
        "prev_kernels": np.zeros((1, cfg.num_kernels, cfg.neck.channels), np.float32),
        "has_prev": np.zeros((1,), np.float32),
    }
    state = {k: zero for k in backends}
    times: dict[str, list[float]] = {k: [] for k in backends}
    for i, rgb in enumerate(frames):
        image = np.ascontiguousarray(rgb[None])
        for k, backend in backends.items():
            t0 = time.perf_counter()
            out = backend.step({"image": image, **state[k]})
            dt = time.perf_counter() - t0
            state[k] = {"prev_kernels": out["cur_kernels"], "has_prev": np.ones((1,), np.float32)}
            if i >= warmup:
                times[k].append(dt)
    return times


def torch_variant(
    model: Any, device: str, threads: Optional[int], compile_mode: Optional[str], fp16: bool
) -> Any:
    """A TorchBackend whose step is ``torch.compile(mode=compile_mode)``d and/or runs under
    CUDA fp16 autocast; outputs are returned as float32 like the other backends'."""
    import torch

    from vknet_core.runtime import TorchBackend

    class Variant(TorchBackend):
        def step(self, feeds):
            with torch.autocast("cuda", torch.float16, enabled=fp16):
                out = super().step(feeds)
            return {k: v.astype(np.float32, copy=False) for k, v in out.items()}

    if (compile_mode or fp16) and not device.startswith("cuda"):
        raise RuntimeError("torch.compile / fp16 variants are timed on CUDA only")
    backend = Variant(model, device, threads=threads)
    if compile_mode:
        backend._step = torch.compile(backend._step, mode=compile_mode)
    return backend


def bench_preset(
    preset: str,
    height: int,
    width: int,
    frames: int,
    warmup: int,
    device: str,
    workdir: Path,
    threads: Optional[int],
    fp16: bool,
    int8_calib: int = 4,
) -> list[Timing]:
    import torch

    import vknet_core
    from vknet_core.runtime import TorchBackend
    from vknet_export.compare import synthetic_clip
    from vknet_export.ort_backend import OrtBackend
    from vknet_export.to_onnx import export_model

    torch.manual_seed(0)
    model = vknet_core.build_model(preset).eval()
    cfg = model.cfg
    onnx_path = workdir / f"{preset}_{height}x{width}.onnx"
    t0 = time.perf_counter()
    export_model(model, onnx_path, height, width)
    log.info("exported %s in %.0f s", onnx_path.name, time.perf_counter() - t0)
    clip = synthetic_clip(height, width, frames + warmup)
    size = f"{height}x{width}"
    ort_device = "cuda" if device.startswith("cuda") else "cpu"
    makers: list[tuple[str, str, Callable[[], Any]]] = [
        ("torch", device, lambda: TorchBackend(model, device, threads=threads)),
        ("onnxruntime", "cpu", lambda: OrtBackend(onnx_path, "cpu", threads)),
    ]
    if int8_calib > 0:
        int8_path = workdir / f"{preset}_{height}x{width}_int8.onnx"

        def make_int8() -> Any:
            from vknet_export.quantize import quantize_onnx

            t = time.perf_counter()
            quantize_onnx(onnx_path, int8_path, [clip[:int8_calib]])
            log.info("quantized %s in %.0f s", int8_path.name, time.perf_counter() - t)
            return OrtBackend(int8_path, "cpu", threads)

        makers.append(("onnxruntime_int8", "cpu", make_int8))
    if ort_device == "cuda":
        for mode, label in ((None, "torch_compile"), ("reduce-overhead", "torch_cudagraphs")):
            for half in (False, True) if fp16 else (False,):
                makers.append(
                    (
                        label + ("_fp16" if half else ""),
                        device,
                        lambda m=mode or "default", h=half: torch_variant(
                            model, device, threads, m, h
                        ),
                    )
                )
        if fp16:
            makers.append(
                ("torch_fp16", device, lambda: torch_variant(model, device, threads, None, True))
            )
        makers.append(("onnxruntime", "cuda", lambda: OrtBackend(onnx_path, "cuda")))
        from vknet_export.trt_backend import TrtBackend

        engine = workdir / f"{preset}_{height}x{width}.engine"
        makers.append(("tensorrt", "fp32", lambda: TrtBackend(engine, device, onnx_path)))
        if fp16:
            engine16 = workdir / f"{preset}_{height}x{width}_fp16.engine"
            makers.append(
                ("tensorrt", "fp16", lambda: TrtBackend(engine16, device, onnx_path, fp16=True))
            )
    backends: dict[tuple[str, str], Any] = {}
    try:
        for name, dev, make in makers:
            try:
                backends[name, dev] = make()
            except Exception as e:  # a runtime that is not installed here: report and go on
                log.warning("%s (%s) skipped: %s", name, dev, e)
        times = time_interleaved(backends, clip, cfg, warmup)
    finally:
        for backend in backends.values():
            backend.close()
    results: list[Timing] = []
    for (name, dev), t in times.items():
        results.append(
            Timing(
                preset,
                size,
                name,
                dev,
                1e3 * statistics.median(t),
                1e3 * float(np.percentile(t, 90)),
            )
        )
        log.info("%s %s %s: %.1f ms", preset, name, dev, results[-1].median_ms)
    base = next((r.median_ms for r in results if r.backend == "torch"), None)
    for r in results:
        r.speedup_vs_torch = base / r.median_ms if base else float("nan")
    return results


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--presets", nargs="+", default=["tiny", "kitti_step_r50"], help="model presets to time"
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(384, 1248),
        metavar=("H", "W"),
        help="network input size (multiples of 32)",
    )
    p.add_argument("--frames", type=int, default=10, help="timed frames per backend")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed frames first (allocator, caches)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (adds ORT CUDA, TensorRT)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and ORT CPU")
    p.add_argument(
        "--fp16",
        action="store_true",
        help="CUDA: also time fp16 (torch autocast variants, TensorRT fp16 engine)",
    )
    p.add_argument(
        "--int8-calib",
        type=int,
        default=4,
        help="calibration frames for the onnxruntime_int8 row (0: no int8 row)",
    )
    p.add_argument("--workdir", type=Path, help="where ONNX/engines go (default: a temp dir)")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("vknet_export", "vknet_core"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    results: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="vknet_bench_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for preset in args.presets:
            results += bench_preset(
                preset,
                *args.size,
                args.frames,
                args.warmup,
                args.device,
                workdir,
                args.threads,
                args.fp16,
                args.int8_calib,
            )
    print(
        f"{'preset':<16} {'size':<9} {'backend':<22} {'device':<6} {'median ms':>10} "
        f"{'p90 ms':>8} {'vs torch':>9}"
    )
    for r in results:
        print(
            f"{r.preset:<16} {r.size:<9} {r.backend:<22} {r.device:<6} {r.median_ms:>10.1f} "
            f"{r.p90_ms:>8.1f} {r.speedup_vs_torch:>8.2f}x"
        )
    print(json.dumps([asdict(r) for r in results]))
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
