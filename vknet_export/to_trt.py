"""Build a TensorRT engine from the exported ONNX graph, with a cache key next to it.

    python export/to_trt.py --onnx m.onnx --output m.engine [--fp16] [--workspace 4] [--build-only]

The engine is reused when its cache key (``vknet_export.engine_cache``) matches this machine's
TensorRT and GPU, else rebuilt (``vknet_export.trt_build``); without ``--build-only`` one frame
runs through the TensorRT backend. Failures print one line (``vknet_core.cli.run_cli``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from vknet_core.cli import CliError, run_cli
from vknet_export.engine_cache import BuildOptions, EngineCacheError, cache_key_path
from vknet_export.trt_build import TrtBuildError, ensure_trt_engine

log = logging.getLogger(__name__)

PROG = "to_trt.py"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="ONNX graph from export/to_onnx.py")
    p.add_argument("--output", type=Path, required=True, help="engine path (.engine)")
    p.add_argument("--fp16", action="store_true", help="fp16 (mask sums stay fp32)")
    p.add_argument("--workspace", type=float, default=4.0, help="builder workspace in GB")
    p.add_argument("--timing-cache", help="timing cache file (default <engine>.timing)")
    p.add_argument(
        "--min-hw",
        type=int,
        nargs=2,
        default=(128, 256),
        help="dynamic graphs: smallest H W of the optimisation profile",
    )
    p.add_argument(
        "--max-hw",
        type=int,
        nargs=2,
        default=(768, 2496),
        help="dynamic graphs: largest H W of the optimisation profile",
    )
    p.add_argument(
        "--build-only",
        action="store_true",
        help="build (or confirm the cached engine) and exit without a test run",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if the cache key matches")
    return p.parse_args(argv)


def build_options(args: argparse.Namespace) -> BuildOptions:
    """Validated builder settings (ValueError saying what was received)."""
    if not args.onnx.is_file():
        raise FileNotFoundError(f"ONNX model not found: {args.onnx}")
    if args.workspace <= 0:
        raise ValueError(f"--workspace must be > 0 GB, got {args.workspace}")
    lo, hi = tuple(args.min_hw), tuple(args.max_hw)
    if min(lo) <= 0 or lo[0] > hi[0] or lo[1] > hi[1]:
        raise ValueError(f"--min-hw {list(lo)} must be positive and <= --max-hw {list(hi)}")
    return BuildOptions(args.fp16, args.workspace, lo, hi, args.timing_cache)


def build_trt(
    onnx: Path, output: Path, options: BuildOptions, test_run: bool = True, force: bool = False
) -> Path:
    """Ensure a fresh engine at ``output`` for ``onnx``; optionally run one frame through it."""
    engine = ensure_trt_engine(onnx, output, options, force=force)
    if test_run:
        from vknet_core.io_spec import dummy_inputs
        from vknet_export.trt_backend import TrtBackend

        with TrtBackend(engine, onnx_path=onnx, fp16=options.fp16) as be:
            out = be.step(dummy_inputs(be.spec.concrete(*_run_hw(be.spec))))
        print("test run:", {k: list(v.shape) for k, v in out.items()})
    print(f"engine {engine}, cache key {cache_key_path(engine)}")
    return engine


def _run_hw(spec) -> tuple[int, int]:
    return (spec.height, spec.width) if spec.height else (256, 512)


def _run(args: argparse.Namespace) -> int:
    options = build_options(args)
    try:
        build_trt(args.onnx, args.output, options, not args.build_only, args.force)
    except (EngineCacheError, TrtBuildError) as e:  # the user's platform or graph: one line
        raise CliError(str(e)) from e
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    return run_cli(PROG, lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
