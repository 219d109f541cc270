"""Quantize an exported graph to int8 and prove it: calibration, accuracy report, verdict.

    python export/quantize.py --onnx m.onnx --output m_int8.onnx \
        --calib-data data/synthetic --calib-split train \
        --val-data data/heldout --val-split val [--report m_int8.report.json]
    python export/quantize.py --onnx m.onnx --output m_int8.onnx --calib-video drive.mp4 \
        --val-images frames/

Calibration frames (``--calib-*``) and validation frames (``--val-*``) each come from an image
folder (one clip, sorted by name), a video file (one clip) or a dataset split read with
``vknet_training.datasets`` (the model's dataset format; one clip per sequence). The quantization
itself is ``vknet_export.quantize`` (which must not import training code); this module adds the
frame sources and the report, so ``export/quantize.py`` launches it from here.

The report runs the fp32 and the int8 graph through the same pipeline (merge, tracker) on the
validation clips. Everywhere: ``semantic_agreement`` (fraction of pixels with the same class) and
``panoptic_agreement`` (same class and the same track id). With labels: STQ/AQ/SQ/VPQ of both and
the deltas. The int8 file is kept only if the loss is within the limits (``--max-stq-loss``,
default 0.01 = 1 STQ point, needs labels; ``--min-semantic-agreement``, default 0.97); else the
command exits 1, leaves no model behind and the report says why. The report JSON is always
written.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vknet_core.atomic import atomic_path, write_text_atomic
from vknet_core.cli import CliError, run_cli
from vknet_export.quantize import RECIPES, quantize_onnx, read_metadata

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
Clip = Iterable[tuple[np.ndarray, Optional[np.ndarray]]]  # (rgb uint8 [H,W,3], GT or None)


@dataclass(frozen=True)
class FrameSource:
    """Exactly one of ``images`` (folder), ``video`` (file) or ``data`` (dataset root)."""

    images: Optional[Path] = None
    video: Optional[Path] = None
    data: Optional[Path] = None
    split: str = "val"
    max_sequences: Optional[int] = None
    max_frames: Optional[int] = None  # per clip

    def check(self, what: str) -> None:
        given = [p for p in (self.images, self.video, self.data) if p is not None]
        if len(given) != 1:
            raise CliError(
                f"{what}: give exactly one of --{what}-images, --{what}-video, "
                f"--{what}-data, got {len(given)}"
            )
        if not given[0].exists():
            raise CliError(f"{what} frames not found: {given[0]}")

    @property
    def labelled(self) -> bool:
        return self.data is not None

    def clips(self, dataset: str) -> Iterator[Clip]:
        """Clips of (rgb, GT panoptic int64 or None), lazily read."""
        if self.images is not None:
            yield _limit(_image_folder(self.images), self.max_frames)
        elif self.video is not None:
            yield _limit(_video(self.video), self.max_frames)
        else:
            from vknet_training.datasets import build_reader

            reader = build_reader(dataset, self.data, self.split)
            for q in reader.sequences()[: self.max_sequences]:
                n = min(reader.num_frames(q), self.max_frames or reader.num_frames(q))
                yield (reader.read_frame(q, i) for i in range(n))


def _limit(frames: Iterator, n: Optional[int]) -> Iterator:
    for i, f in enumerate(frames):
        if n is not None and i >= n:
            return
        yield f


def _image_folder(folder: Path) -> Iterator[tuple[np.ndarray, None]]:
    from vknet_training.datasets.base import read_rgb

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CliError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    for p in files:
        yield read_rgb(p), None


def _video(path: Path) -> Iterator[tuple[np.ndarray, None]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CliError(f"cannot open video {path} (expected a file OpenCV can decode)")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield np.ascontiguousarray(bgr[:, :, ::-1]), None
    finally:
        cap.release()


def accuracy_report(fp32_path: Path, int8_path: Path, source: FrameSource) -> dict:
    """Run both graphs through ``VideoPanopticPipeline`` on ``source``; agreement and metrics."""
    from vknet_core.pipeline import VideoPanopticPipeline
    from vknet_export.backends import make_backend
    from vknet_training.evaluate import EvalSettings, Scorer

    pipes = {}
    for key, path in (("fp32", fp32_path), ("int8", int8_path)):
        backend = make_backend("onnxruntime", path)
        pipes[key] = VideoPanopticPipeline(backend, backend.cfg)
    cfg = pipes["fp32"].model_cfg
    settings = EvalSettings.for_dataset(cfg.labels.dataset, labels=cfg.labels)
    scorers = {k: Scorer(settings) for k in pipes} if source.labelled else {}
    D = settings.label_divisor
    same_sem = same_pan = pixels = frames = clips = 0
    t0 = time.perf_counter()
    try:
        for q, clip in enumerate(source.clips(cfg.labels.dataset)):
            clips += 1
            for p in pipes.values():
                p.reset()
            for rgb, gt in clip:
                out = {k: p.step(rgb) for k, p in pipes.items()}
                a, b = out["fp32"], out["int8"]
                same_sem += int(np.count_nonzero(a.semantic == b.semantic))
                same_pan += int(np.count_nonzero(a.panoptic == b.panoptic))
                pixels += a.semantic.size
                frames += 1
                for k, s in scorers.items():
                    f = out[k]
                    pred = np.asarray(f.panoptic).astype(np.int64)
                    if f.label_divisor != D:
                        pred = pred // f.label_divisor * D + pred % f.label_divisor
                    s.update(gt, pred, q)
    finally:
        for p in pipes.values():
            p.close()
    if frames == 0:
        raise CliError("no validation frames: the --val source was empty")
    report: dict = {
        "frames": frames,
        "clips": clips,
        "labelled": source.labelled,
        "semantic_agreement": same_sem / pixels,
        "panoptic_agreement": same_pan / pixels,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for k, s in scorers.items():
        r = s.result()
        report[k] = {m: r[m] for m in ("STQ", "AQ", "SQ", "VPQ")}
    if scorers:
        report["delta"] = {
            m: _sub(report["int8"][m], report["fp32"][m]) for m in ("STQ", "AQ", "SQ", "VPQ")
        }
    return report


def _sub(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def verdict(report: dict, max_stq_loss: float, min_semantic_agreement: float) -> list[str]:
    """Reasons to reject the int8 model (empty list: accepted)."""
    why = []
    if report["semantic_agreement"] < min_semantic_agreement:
        why.append(
            f"semantic agreement {report['semantic_agreement']:.4f} < {min_semantic_agreement}"
        )
    stq = report.get("delta", {}).get("STQ")
    if report["labelled"] and (stq is None or -stq > max_stq_loss):
        why.append(f"STQ loss {-stq if stq is not None else float('nan'):.4f} > {max_stq_loss}")
    return why


def quantize_and_report(
    fp32: Path,
    output: Path,
    calib: FrameSource,
    val: FrameSource,
    recipe: str = "conv",
    calib_frames: int = 64,
    max_stq_loss: float = 0.01,
    min_semantic_agreement: float = 0.97,
    report_path: Optional[Path] = None,
) -> dict:
    """The CLI's work; returns the report. Raises CliError (model not written) on rejection."""
    if not fp32.is_file():
        raise CliError(f"fp32 ONNX model not found: {fp32}")
    if recipe not in RECIPES:
        raise CliError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    calib.check("calib")
    val.check("val")
    cfg, _ = read_metadata(fp32)
    report_path = report_path or output.with_suffix(".report.json")
    with atomic_path(output) as tmp:
        rgb_clips = ((rgb for rgb, _ in clip) for clip in calib.clips(cfg.labels.dataset))
        info = quantize_onnx(fp32, tmp, rgb_clips, RECIPES[recipe], max_frames=calib_frames)
        report = {
            "fp32_model": str(fp32),
            "int8_model": str(output),
            "recipe": recipe,
            "recipe_settings": asdict(info.recipe),
            "calibration_frames": info.calibration_frames,
            "quantized_nodes": info.quantized_nodes,
            "limits": {
                "max_stq_loss": max_stq_loss,
                "min_semantic_agreement": min_semantic_agreement,
            },
            **accuracy_report(fp32, tmp, val),
        }
        reasons = verdict(report, max_stq_loss, min_semantic_agreement)
        report["accepted"] = not reasons
        report["rejected_because"] = reasons
        write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
        print(format_report(report))
        if reasons:
            raise CliError(
                f"int8 model rejected ({'; '.join(reasons)}); not written. Report: {report_path}"
            )
    print(f"wrote {output} and {report_path}")
    return report


def format_report(r: dict) -> str:
    lines = [
        f"int8 vs fp32 on {r['frames']} frames in {r['clips']} clips "
        f"(calibrated on {r['calibration_frames']} frames, recipe {r['recipe']}):",
        f"  semantic agreement {r['semantic_agreement']:.4f}, "
        f"panoptic (class + track id) agreement {r['panoptic_agreement']:.4f}",
    ]
    if r.get("delta"):
        for m in ("STQ", "AQ", "SQ", "VPQ"):
            a, b, d = r["fp32"][m], r["int8"][m], r["delta"][m]
            if a is not None and b is not None:
                lines.append(f"  {m:<4} fp32 {a:.4f}  int8 {b:.4f}  delta {d:+.4f}")
    lines.append(
        "  accepted" if r["accepted"] else "  REJECTED: " + "; ".join(r["rejected_because"])
    )
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--onnx", type=Path, required=True, help="fp32 graph from export/to_onnx.py")
    p.add_argument("--output", type=Path, required=True, help="int8 .onnx to write")
    p.add_argument("--report", type=Path, help="report JSON (default: OUTPUT.report.json)")
    p.add_argument(
        "--recipe",
        default="conv",
        choices=sorted(RECIPES),
        help="quantization recipe (default conv: see README int8)",
    )
    for what, split in (("calib", "train"), ("val", "val")):
        g = p.add_argument_group(f"{what} frames (one source)")
        g.add_argument(f"--{what}-images", type=Path, help="folder of images (one clip)")
        g.add_argument(f"--{what}-video", type=Path, help="video file (one clip)")
        g.add_argument(f"--{what}-data", type=Path, help="dataset root (model's format)")
        g.add_argument(f"--{what}-split", default=split, help=f"dataset split (default {split})")
        g.add_argument(f"--{what}-max-sequences", type=int, help="use the first N sequences")
    p.add_argument(
        "--calib-frames", type=int, default=64, help="calibration frames in all (default 64)"
    )
    p.add_argument("--val-max-frames", type=int, help="validation frames per clip")
    p.add_argument(
        "--max-stq-loss",
        type=float,
        default=0.01,
        help="reject above this STQ loss (labelled --val-data; default 0.01)",
    )
    p.add_argument(
        "--min-semantic-agreement",
        type=float,
        default=0.97,
        help="reject below this fraction of same-class pixels (default 0.97)",
    )
    args = p.parse_args(argv)
    if args.calib_frames < 1:
        p.error(f"--calib-frames must be >= 1, got {args.calib_frames}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's root warnings
    logging.getLogger("vknet_training").setLevel(logging.INFO)
    calib = FrameSource(
        args.calib_images,
        args.calib_video,
        args.calib_data,
        args.calib_split,
        args.calib_max_sequences,
    )
    val = FrameSource(
        args.val_images,
        args.val_video,
        args.val_data,
        args.val_split,
        args.val_max_sequences,
        args.val_max_frames,
    )
    return run_cli(
        "quantize.py",
        lambda: (
            quantize_and_report(
                args.onnx,
                args.output,
                calib,
                val,
                args.recipe,
                args.calib_frames,
                args.max_stq_loss,
                args.min_semantic_agreement,
                args.report,
            )
            and None
        ),
    )
