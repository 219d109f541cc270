"""Per-frame latency: PyTorch eager vs ONNX Runtime (and TensorRT where present), one run.

    python scripts/bench_backends.py                        # tiny + kitti_step_r50 at 384x1248
    python scripts/bench_backends.py --presets tiny --size 128 256 --frames 5
    python scripts/bench_backends.py --device cuda          # torch CUDA, ORT CUDA EP, TensorRT

Models use seeded random weights (latency does not depend on them). Each backend runs the
synthetic clip frame by frame with the state fed back; the first ``--warmup`` frames are not
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

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
    state = {"prev_kernels": np.zeros((1, cfg.num_kernels, cfg.neck.channels), np.float32),
             "has_prev": np.zeros((1,), np.float32)}
    times = []
    for i, rgb in enumerate(frames):
        t0 = time.perf_counter()
        out = backend.step({"image": np.ascontiguousarray(rgb[None]), **state})
        dt = time.perf_counter() - t0
        state = {"prev_kernels": out["cur_kernels"], "has_prev": np.ones((1,), np.float32)}
        if i >= warmup:
            times.append(dt)
    return times


def bench_preset(preset: str, height: int, width: int, frames: int, warmup: int, device: str,
                 workdir: Path, threads: Optional[int], fp16: bool) -> list[Timing]:
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
        ("torch", device, lambda: TorchBackend(model, device)),
        ("onnxruntime", "cpu", lambda: OrtBackend(onnx_path, "cpu", threads)),
    ]
    if ort_device == "cuda":
        makers.append(("onnxruntime", "cuda", lambda: OrtBackend(onnx_path, "cuda")))
        from vknet_export.trt_backend import TrtBackend

        engine = workdir / f"{preset}_{height}x{width}.engine"
        makers.append(("tensorrt", "fp32", lambda: TrtBackend(engine, device, onnx_path)))
        if fp16:
            engine16 = workdir / f"{preset}_{height}x{width}_fp16.engine"
            makers.append(("tensorrt", "fp16",
                           lambda: TrtBackend(engine16, device, onnx_path, fp16=True)))
    if threads:
        torch.set_num_threads(threads)
    results: list[Timing] = []
    for name, dev, make in makers:
        try:
            backend = make()
        except Exception as e:  # a runtime that is not installed here: report and go on
            log.warning("%s (%s) skipped: %s", name, dev, e)
            continue
        try:
            t = time_backend(backend, clip, cfg, warmup)
        finally:
            backend.close()
        results.append(Timing(preset, size, name, dev, 1e3 * statistics.median(t),
                              1e3 * float(np.percentile(t, 90))))
        log.info("%s %s %s: %.1f ms", preset, name, dev, results[-1].median_ms)
    base = next((r.median_ms for r in results if r.backend == "torch"), None)
    for r in results:
        r.speedup_vs_torch = base / r.median_ms if base else float("nan")
    return results


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "kitti_step_r50"],
                   help="model presets to time")
    p.add_argument("--size", type=int, nargs=2, default=(384, 1248), metavar=("H", "W"),
                   help="network input size (multiples of 32)")
    p.add_argument("--frames", type=int, default=10, help="timed frames per backend")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first (allocator, caches)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (adds ORT CUDA, TensorRT)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and ORT CPU")
    p.add_argument("--fp16", action="store_true", help="also time a TensorRT fp16 engine")
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
            results += bench_preset(preset, *args.size, args.frames, args.warmup, args.device,
                                    workdir, args.threads, args.fp16)
    print(f"{'preset':<16} {'size':<9} {'backend':<12} {'device':<6} {'median ms':>10} "
          f"{'p90 ms':>8} {'vs torch':>9}")
    for r in results:
        print(f"{r.preset:<16} {r.size:<9} {r.backend:<12} {r.device:<6} {r.median_ms:>10.1f} "
              f"{r.p90_ms:>8.1f} {r.speedup_vs_torch:>8.2f}x")
    print(json.dumps([asdict(r) for r in results]))
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
