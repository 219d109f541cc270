"""Run the same clip through two backends and say whether they compute the same model.

    python export/compare.py --a torch:m.pt --b onnxruntime:m.onnx [--frames 8] [--clip DIR]

Two checks (``vknet_export.agreement``): *teacher-forced*, both backends get the same
``prev_kernels`` each frame and every output must agree within 1e-3 of its magnitude (frames moved
by a hard-mask flip at a logit within float noise of 0 are named and tolerated while they stay
sporadic); *free-running*, each backend feeds back its own state through merge + tracker and the
panoptic maps must agree on >= 99.9% of the pixels and the track ids on every agreeing segment.
It prints a per-frame table and one line ``VERDICT: PASS (...)`` or ``VERDICT: FAIL: <reason>``.
Without ``--clip`` a synthetic clip of moving blobs at the network size is used.

Exit codes: 0 PASS; 3 FAIL (the backends disagree); 2 a user error (missing or corrupt model,
the two models are different presets, a bad size); 1 an internal error.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vknet_core.cli import CliError, run_cli
from vknet_core.types import OUTPUT_NAMES

log = logging.getLogger(__name__)

# Acceptance tolerances (issue 5): cls_prob absolute, the rest relative to the output's range.
TOLERANCES = {
    "cls_prob": ("abs", 1e-4),
    "mask_logits": ("rel", 1e-3),
    "track_embed": ("rel", 1e-3),
    "cur_kernels": ("rel", 1e-3),
    "sem_logits": ("rel", 1e-3),
}

# (cx, cy, ax, ay, vx, vy) in image units, RGB colour: blobs that move and overlap over time.
_BLOBS = (
    (0.18, 0.62, 0.09, 0.20, 0.020, 0.000, (220, 40, 40)),
    (0.45, 0.55, 0.12, 0.16, -0.012, 0.004, (30, 60, 210)),
    (0.72, 0.70, 0.07, 0.18, 0.010, -0.006, (240, 230, 60)),
    (0.88, 0.35, 0.06, 0.10, -0.025, 0.010, (40, 200, 90)),
    (0.30, 0.28, 0.05, 0.09, 0.015, 0.008, (250, 250, 250)),
)


def synthetic_clip(height: int, width: int, n_frames: int = 8) -> list[np.ndarray]:
    """Deterministic moving-blob frames, each uint8 [H, W, 3] RGB on a grey background."""
    y = ((np.arange(height) + 0.5) / height)[:, None]
    x = ((np.arange(width) + 0.5) / width)[None, :]
    frames = []
    for t in range(n_frames):
        img = np.full((height, width, 3), 120.0)
        for cx0, cy0, ax, ay, vx, vy, col in _BLOBS:
            d2 = ((x - cx0 - vx * t) / ax) ** 2 + ((y - cy0 - vy * t) / ay) ** 2
            w = np.clip((1.0 - d2) * 4.0, 0.0, 1.0)[..., None]  # [H, W, 1]
            img = img + (np.asarray(col, np.float64) - img) * w
        frames.append(np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8))
    return frames


def read_clip(folder: Path, n_frames: int) -> list[np.ndarray]:
    """The first ``n_frames`` images (sorted by name) of a folder as uint8 RGB."""
    import imageio.v3 as iio

    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")
    )[:n_frames]
    if not files:
        raise FileNotFoundError(f"no .png/.jpg images in {folder}")
    frames = []
    for p in files:
        img = iio.imread(p)
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        frames.append(np.ascontiguousarray(img, dtype=np.uint8))
    return frames


@dataclass
class Comparison:
    """Max abs / rel difference per output over all frames; pipeline agreement (None = n/a)."""

    max_abs: dict[str, float] = field(default_factory=dict)
    max_rel: dict[str, float] = field(default_factory=dict)
    panoptic_equal: bool | None = None
    track_ids_equal: bool | None = None
    frames: int = 0
    details: list[str] = field(default_factory=list)

    def within_tolerance(self) -> dict[str, bool]:
        return {
            n: (self.max_abs if kind == "abs" else self.max_rel)[n] <= tol
            for n, (kind, tol) in TOLERANCES.items()
            if n in self.max_abs
        }

    @property
    def ok(self) -> bool:
        return (
            all(self.within_tolerance().values())
            and self.panoptic_equal is not False
            and self.track_ids_equal is not False
        )

    def table(self) -> str:
        ok = self.within_tolerance()
        rows = [f"{'output':<12} {'max abs':>10} {'max rel':>10}  tolerance"]
        for n in self.max_abs:
            kind, tol = TOLERANCES.get(n, ("rel", float("nan")))
            rows.append(
                f"{n:<12} {self.max_abs[n]:>10.3e} {self.max_rel[n]:>10.3e}  "
                f"{kind} <= {tol:g}: {'ok' if ok.get(n) else 'FAIL'}"
            )
        rows.append(
            f"panoptic maps identical: {_yn(self.panoptic_equal)}; "
            f"track ids identical: {_yn(self.track_ids_equal)} ({self.frames} frames)"
        )
        return "\n".join(rows + self.details)


def _yn(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "NO")


def compare_outputs(
    a: Any, b: Any, frames: Sequence[np.ndarray], num_kernels: int, channels: int
) -> Comparison:
    """Raw network outputs of backends ``a`` (reference) and ``b``, each with its own state.

    ``frames`` must already be at the network size (uint8 [H, W, 3]).
    """
    res = Comparison(
        max_abs=dict.fromkeys(OUTPUT_NAMES, 0.0), max_rel=dict.fromkeys(OUTPUT_NAMES, 0.0)
    )
    state = {
        k: {
            "prev_kernels": np.zeros((1, num_kernels, channels), np.float32),
            "has_prev": np.zeros((1,), np.float32),
        }
        for k in ("a", "b")
    }
    for rgb in frames:
        image = np.ascontiguousarray(rgb[None])
        out_a = a.step({"image": image, **state["a"]})
        out_b = b.step({"image": image, **state["b"]})
        for n in OUTPUT_NAMES:
            d = float(np.abs(out_a[n].astype(np.float64) - out_b[n]).max())
            scale = float(np.abs(out_a[n]).max()) + 1e-12
            res.max_abs[n] = max(res.max_abs[n], d)
            res.max_rel[n] = max(res.max_rel[n], d / scale)
        for k, out in (("a", out_a), ("b", out_b)):
            state[k] = {"prev_kernels": out["cur_kernels"], "has_prev": np.ones((1,), np.float32)}
        res.frames += 1
    return res


def compare_pipelines(
    make_pipeline: Callable[[Any], Any],
    a: Any,
    b: Any,
    frames: Sequence[np.ndarray],
    res: Comparison,
) -> Comparison:
    """Run both backends through ``make_pipeline(backend)`` and compare the PanopticFrames."""
    pa, pb = make_pipeline(a), make_pipeline(b)
    res.panoptic_equal, res.track_ids_equal = True, True
    for t, rgb in enumerate(frames):
        fa, fb = pa.step(rgb), pb.step(rgb)
        if not np.array_equal(fa.panoptic, fb.panoptic):
            res.panoptic_equal = False
            res.details.append(
                f"frame {t}: panoptic differs at {int((fa.panoptic != fb.panoptic).sum())} pixels"
            )
        ids_a = [(s.id, s.track_id) for s in fa.segments]
        ids_b = [(s.id, s.track_id) for s in fb.segments]
        if ids_a != ids_b:  # per-pixel differences are panoptic_equal's business
            res.track_ids_equal = False
            res.details.append(f"frame {t}: track ids {ids_a} vs {ids_b}")
        res.details.append(
            f"frame {t}: {len(fa.segments)} segments, tracks "
            f"{sorted({s.track_id for s in fa.segments if s.track_id})}"
        )
    return res


def compare_backends(
    a: Any, b: Any, cfg: Any, frames: Sequence[np.ndarray], with_pipeline: bool = True
) -> Comparison:
    """Raw outputs at network size, then the full pipeline (if present) on the same frames."""
    res = compare_outputs(a, b, frames, cfg.num_kernels, cfg.neck.channels)
    if with_pipeline:
        try:
            from vknet_core.pipeline import VideoPanopticPipeline
        except ImportError as e:
            res.details.append(f"pipeline comparison skipped: {e}")
            return res
        compare_pipelines(lambda be: VideoPanopticPipeline(be, cfg), a, b, frames, res)
    return res


EXIT_PASS, EXIT_FAIL = 0, 3


def _parse_backend(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected BACKEND:PATH, got {text!r}")
    return name, Path(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="compare.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--a", type=_parse_backend, required=True, help="reference BACKEND:PATH, e.g. torch:m.pt"
    )
    p.add_argument(
        "--b",
        type=_parse_backend,
        required=True,
        help="compared BACKEND:PATH, e.g. onnxruntime:m.onnx",
    )
    p.add_argument("--device-a", default="cpu", help="device of --a")
    p.add_argument("--device-b", default="cpu", help="device of --b")
    p.add_argument("--frames", type=int, default=8, help="clip length (>= 2)")
    p.add_argument("--clip", type=Path, help="folder of frames (default: synthetic clip)")
    p.add_argument("--height", type=int, help="network height (default: from the ONNX/engine)")
    p.add_argument("--width", type=int, help="network width (default: from the ONNX/engine)")
    return p.parse_args(argv)


class _Recorder:
    """A backend that keeps every output it returns (the free-running tensors)."""

    def __init__(self, backend: Any):
        self.backend, self.outputs = backend, []

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.backend.step(feeds)
        self.outputs.append(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def check_same_model(a: Any, b: Any, spec_a: Any, spec_b: Any) -> None:
    """Both backends must hold the same preset (architecture and labels)."""
    if a.cfg != b.cfg:
        fields = [
            f
            for f in ("backbone", "neck", "head", "video", "labels", "pixel_mean", "pixel_std")
            if getattr(a.cfg, f) != getattr(b.cfg, f)
        ]
        raise CliError(
            f"--a is model {a.cfg.name!r} and --b is model {b.cfg.name!r} "
            f"(differing: {', '.join(fields) or 'name'}); compare needs two backends "
            "of the same model"
        )
    fixed = [s for s in (spec_a, spec_b) if s is not None and not getattr(s, "dynamic", True)]
    if len({(s.height, s.width) for s in fixed}) > 1:
        raise CliError(
            f"--a is exported for {fixed[0].height}x{fixed[0].width} and --b for "
            f"{fixed[1].height}x{fixed[1].width}; export both at the same size"
        )


def _load(make_backend: Callable[..., Any], side: str, name: str, path: Path, device: str) -> Any:
    """A backend, or a CliError naming the file and what was expected (no traceback)."""
    try:
        return make_backend(name, path, device=device)
    except (CliError, KeyboardInterrupt):
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CliError(
            f"{side}: cannot load {name} model {path} ({type(e).__name__}: {first}); "
            "expected a vknet checkpoint (.pt) for torch or an ONNX from "
            "export/to_onnx.py"
        ) from e


def compare(args: argparse.Namespace) -> int:
    """Run both checks; print the table and the verdict line. Returns EXIT_PASS or EXIT_FAIL."""
    from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
    from vknet_core.preprocess import PreprocessConfig, to_model_input
    from vknet_export.agreement import Verdict, free_running, teacher_forced
    from vknet_export.backends import make_backend

    if args.frames < 2:
        raise CliError(f"--frames must be >= 2 (frame 0 has no state to link), got {args.frames}")
    for side, (name, path) in (("--a", args.a), ("--b", args.b)):
        if not path.is_file():
            raise CliError(f"{side}: {name} model file not found: {path}")
    a = _load(make_backend, "--a", *args.a, args.device_a)
    try:
        b = _load(make_backend, "--b", *args.b, args.device_b)
    except BaseException:
        a.close()
        raise
    try:
        spec_a, spec_b = getattr(a, "spec", None), getattr(b, "spec", None)
        check_same_model(a, b, spec_a, spec_b)
        spec = next((s for s in (spec_b, spec_a) if s is not None), None)
        fixed = spec is not None and not getattr(spec, "dynamic", True)
        H = args.height or (spec.height if spec is not None else 256)
        W = args.width or (spec.width if spec is not None else 512)
        if fixed and (H, W) != (spec.height, spec.width):
            raise CliError(
                f"--height/--width {H}x{W} differ from the exported size "
                f"{spec.height}x{spec.width}"
            )
        if H % 32 or W % 32 or H <= 0 or W <= 0:
            raise CliError(f"network size must be positive multiples of 32, got {H}x{W}")
        frames = (
            read_clip(args.clip, args.frames) if args.clip else synthetic_clip(H, W, args.frames)
        )
        pre = PreprocessConfig(net_hw=(H, W))
        net = [to_model_input(f, pre)[0] for f in frames]
        teacher = teacher_forced(a, b, net, a.cfg.num_kernels, a.cfg.neck.channels)
        ra, rb = _Recorder(a), _Recorder(b)
        free = free_running(
            lambda be: VideoPanopticPipeline(be, a.cfg, PipelineConfig(preprocess=pre)),
            ra,
            rb,
            frames,
        )
        free.tensor_drift = {
            n: max(
                float(np.abs(x[n].astype(np.float64) - y[n]).max() / (np.abs(x[n]).max() + 1e-12))
                for x, y in zip(ra.outputs, rb.outputs)
            )
            for n in OUTPUT_NAMES
        }
    finally:
        a.close()
        b.close()
    verdict = Verdict(teacher, free)
    print(
        f"{args.a[0]} ({args.a[1].name}) vs {args.b[0]} ({args.b[1].name}), {H}x{W}, "
        f"{len(frames)} frames"
    )
    print(verdict.report())
    return EXIT_PASS if verdict.ok else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    return run_cli("compare.py", lambda: compare(args))


if __name__ == "__main__":
    raise SystemExit(main())
