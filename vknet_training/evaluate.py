"""Score video panoptic predictions with STQ and VPQ (``shared/reference/metrics.md``).

Two modes::

    # (b) a folder of prediction PNGs against ground truth
    python training/evaluate.py --gt GT_DIR --pred PRED_DIR --format kitti_step --out metrics.json

    # (a) run a model online (PyTorch checkpoint or ONNX) over a dataset split and score it
    python training/evaluate.py --checkpoint m.pt --data KITTI_STEP_ROOT --split val --out m.json
    python training/evaluate.py --onnx m.onnx --data KITTI_STEP_ROOT --split val

Formats (``vknet_core.panoptic_io``): ``kitti_step`` (RGB PNG, R = semantic, G*256+B = instance;
nested ``SEQ/FRAME.png`` or flat ``SEQ_FRAME[_panoptic].png``), ``cityscapes_vps`` (COCO-panoptic
PNGs + json), ``vipseg`` (single-channel ``VIDEO/FRAME.png``). GT and prediction folders may use
different layouts; frames are matched by (sequence, frame) number.

Conventions: STQ as deeplab2 on whole frames (``--mask-void`` for Video K-Net's GT-void masking);
VPQ as the official VPSNet evaluator. VPQ windows default per dataset: KITTI-STEP k = 0..3 (every
frame annotated, n = k + 1), Cityscapes-VPS k = 0, 5, 10, 15 (every 5th frame annotated), VIPSeg
n = 1, 2, 4, 6, 8. ``mean`` averages VPQ over the windows.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
from tqdm import tqdm

from vknet_core.atomic import write_text_atomic
from vknet_core.cli import ArgumentParser, run_cli
from vknet_core.panoptic_io import FORMATS, PanopticFolder
from vknet_core.types import PanopticFrame
from vknet_training.eval_settings import DATASET_PRESETS, EvalSettings
from vknet_training.eval_table import format_table
from vknet_training.scorer import Scorer

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- (b) folders


def evaluate_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    fmt: str,
    settings: Optional[EvalSettings] = None,
    gt_json: Optional[str | Path] = None,
    pred_json: Optional[str | Path] = None,
    progress: bool = True,
) -> dict:
    """Score a folder of prediction label files against a GT folder of the same format.

    Every GT frame needs a prediction with the same shape (else ``FileNotFoundError`` /
    ``ValueError`` naming the files); prediction frames without GT are ignored with a warning.

    Returns: ``STQ``, ``AQ``, ``SQ``, ``VPQ`` (mean over windows), ``stq`` (with per-sequence
    values), ``vpq`` (per window ``k{k}`` and ``mean``), ``per_class`` (IoU and PQ per window),
    ``settings``, ``num_sequences``, ``num_frames``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    s = settings or EvalSettings.for_dataset(fmt)
    D, ign = s.label_divisor, s.ignore_label
    gt = PanopticFolder(gt_dir, fmt, D, ign, things=s.things, json_file=gt_json)
    pred = PanopticFolder(pred_dir, fmt, D, ign, things=s.things, json_file=pred_json)
    missing = [
        (q, f)
        for q in gt.sequences()
        for f in gt.frames(q)
        if q not in pred.sequences() or f not in pred.frames(q)
    ]
    if missing:
        ex = ", ".join(f"sequence {q} frame {f}" for q, f in missing[:5])
        raise FileNotFoundError(
            f"{len(missing)} of {len(gt)} GT frames have no prediction in {pred_dir}, e.g. {ex} "
            f"(GT {gt.ref(*missing[0]).path}); prediction sequences found: {pred.sequences()[:10]}"
        )
    extra = len(pred) - len(gt)
    if extra:
        log.warning("%d prediction frames in %s have no GT and are not scored", extra, pred_dir)

    scorer = Scorer(s)
    with tqdm(
        total=len(gt), desc="evaluate", unit="frame", disable=None if progress else True
    ) as bar:
        for q in gt.sequences():
            pred_frames = dict(zip(pred.frames(q), pred.read(q)))  # one sequence at a time
            for f, g in zip(gt.frames(q), gt.read(q)):
                p = pred_frames[f]
                if g.shape != p.shape:
                    raise ValueError(
                        f"size mismatch: GT {gt.ref(q, f).path} is {g.shape[0]}x{g.shape[1]} but "
                        f"prediction {pred.ref(q, f).path} is {p.shape[0]}x{p.shape[1]}"
                    )
                scorer.update(g, p, q)
                bar.update(1)
    return scorer.result()


# ----------------------------------------------------------------------------- (a) model online


class FramePipeline(Protocol):
    """What ``evaluate_model`` needs: ``vknet_core.pipeline.VideoPanopticPipeline`` has it."""

    def reset(self) -> None: ...

    def step(self, rgb: np.ndarray) -> PanopticFrame: ...


def evaluate_model(
    sequences: Iterable[Iterable[tuple[np.ndarray, np.ndarray]]],
    pipeline: FramePipeline,
    settings: EvalSettings,
    progress: bool = True,
    total_frames: Optional[int] = None,
) -> dict:
    """Run ``pipeline`` online over each sequence (``reset()`` first); score like
    ``evaluate_folders``. The one online evaluation: the CLI's model mode and training-time
    validation (``validate.py``) both end here.

    Args:
        sequences: each an iterable of (rgb uint8 [H, W, 3], GT panoptic int [H, W]) in time order,
            GT ids ``semantic * settings.label_divisor + instance``.
        pipeline: ``reset()`` and ``step(rgb) -> PanopticFrame`` (``panoptic`` =
            semantic * ``frame.label_divisor`` + track id).
        total_frames: for the progress bar only.
    """
    scorer = Scorer(settings)
    D = settings.label_divisor
    with tqdm(
        total=total_frames, desc="evaluate", unit="frame", disable=None if progress else True
    ) as bar:
        for i, seq in enumerate(sequences):
            pipeline.reset()
            for rgb, gt in seq:
                frame = pipeline.step(rgb)
                pred = np.asarray(frame.panoptic).astype(np.int64)
                if frame.label_divisor != D:
                    pred = pred // frame.label_divisor * D + pred % frame.label_divisor
                if pred.shape != np.shape(gt):
                    raise ValueError(
                        f"sequence {i}: pipeline returned a {pred.shape} panoptic map for a "
                        f"{np.shape(gt)} GT frame (expected the camera resolution)"
                    )
                scorer.update(gt, pred, i)
                bar.update(1)
    return scorer.result()


def reader_sequences(
    reader: Any,
    sequences: Sequence[int],
    label_divisor: int,
    max_frames: Optional[int] = None,
) -> tuple[list[Iterator[tuple[np.ndarray, np.ndarray]]], int]:
    """Lazy per-sequence frame iterators of a ``VideoReader`` for ``evaluate_model``, GT ids
    re-encoded with ``label_divisor``; returns (iterators, total number of frames)."""
    counts = {q: min(reader.num_frames(q), max_frames or reader.num_frames(q)) for q in sequences}
    rd = reader.label_divisor

    def frames(q: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx in range(counts[q]):
            rgb, gt = reader.read_frame(q, idx)
            if rd != label_divisor:
                gt = gt // rd * label_divisor + gt % rd
            yield rgb, gt

    return [frames(q) for q in sequences], sum(counts.values())


def check_label_space(model_labels: Any, dataset: str) -> None:
    """A model can only be scored on a dataset with its number of classes."""
    from vknet_core.config import get_preset

    want = get_preset(DATASET_PRESETS[dataset]).labels.num_classes
    if model_labels.num_classes != want:
        raise ValueError(
            f"the model predicts {model_labels.num_classes} classes ({model_labels.dataset}), "
            f"but {dataset} has {want}: give a checkpoint trained for {dataset}"
        )


def open_reader(dataset: str, data: str | Path, split: str, model_name: str) -> Any:
    """The dataset reader for a model; a failure names the model's dataset (a checkpoint of
    another preset than the data is the usual cause)."""
    from vknet_training.datasets import build_reader

    try:
        return build_reader(dataset, data, split)
    except (OSError, ValueError) as e:
        raise type(e)(
            f"{e} [the model ({model_name}) is for {dataset}: --data must be a {dataset} root]"
        ) from None


def evaluate_dataset(
    data: str | Path,
    split: str,
    checkpoint: Optional[str | Path] = None,
    onnx: Optional[str | Path] = None,
    device: str = "cpu",
    dataset: Optional[str] = None,
    max_sequences: Optional[int] = None,
    max_frames: Optional[int] = None,
    progress: bool = True,
    **overrides: Any,
) -> dict:
    """Mode (a): build the pipeline from a checkpoint or an ONNX file, read ``split`` of ``data``
    with ``vknet_training.datasets`` and score the online predictions.

    The label space is the model's (``cfg.labels``); ``dataset`` defaults to
    ``cfg.labels.dataset``; ``overrides`` are ``EvalSettings.for_dataset`` keywords (things,
    ks, frame_stride, ...).
    """
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give exactly one of checkpoint or onnx")
    from vknet_core.pipeline import VideoPanopticPipeline

    if checkpoint is not None:
        pipeline = VideoPanopticPipeline.from_checkpoint(checkpoint, device=device)
    else:
        from vknet_export.backends import make_backend

        backend = make_backend("onnxruntime", onnx, device)
        pipeline = VideoPanopticPipeline(backend, backend.cfg)
    try:
        labels = pipeline.model_cfg.labels
        dataset = dataset or labels.dataset
        check_label_space(labels, dataset)
        s = EvalSettings.for_dataset(dataset, labels=labels, **overrides)
        reader = open_reader(dataset, data, split, pipeline.model_cfg.name)
        seqs = reader.sequences()[:max_sequences]
        if not seqs:
            raise ValueError(f"{reader!r} has no sequence to evaluate")
        frames, total = reader_sequences(reader, seqs, s.label_divisor, max_frames)
        return evaluate_model(frames, pipeline, s, progress=progress, total_frames=total)
    finally:
        pipeline.close()


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="evaluate.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("score prediction files (mode b)")
    g.add_argument("--gt", type=Path, help="GT folder")
    g.add_argument("--pred", type=Path, help="prediction folder (same format)")
    g.add_argument(
        "--gt-json", type=Path, help="cityscapes_vps: GT json (default: the only *.json in --gt)"
    )
    g.add_argument(
        "--pred-json",
        type=Path,
        help="cityscapes_vps: prediction json (default: the only *.json in --pred)",
    )
    m = p.add_argument_group("run a model online over a dataset split (mode a)")
    m.add_argument("--checkpoint", type=Path, help="vknet checkpoint (.pt)")
    m.add_argument("--onnx", type=Path, help="exported ONNX model (ONNX Runtime)")
    m.add_argument("--data", type=Path, help="dataset root")
    m.add_argument("--split", default="val", help="dataset split (default: val)")
    m.add_argument("--device", default="cpu", help="cpu | cuda[:i] (default: cpu)")
    m.add_argument("--max-sequences", type=int, help="score only the first N sequences")
    m.add_argument("--max-frames", type=int, help="score only the first N frames of each sequence")
    c = p.add_argument_group("metric settings")
    c.add_argument(
        "--format",
        choices=FORMATS,
        help="label format / dataset (required with --gt; with a model: its config's dataset)",
    )
    c.add_argument(
        "--things",
        type=lambda t: tuple(int(x) for x in t.split(",") if x),
        help="thing train ids, comma separated (default: the dataset preset's, KITTI-STEP 11,13)",
    )
    c.add_argument(
        "--vpq-k",
        type=lambda t: tuple(int(x) for x in t.split(",")),
        help="VPQ windows as frame gaps, comma separated (default per dataset)",
    )
    c.add_argument(
        "--frame-stride", type=int, help="spacing of the annotated frames in units of --vpq-k"
    )
    c.add_argument("--label-divisor", type=int, help="panoptic label divisor (default 1000)")
    c.add_argument(
        "--mask-void",
        action="store_true",
        help="STQ: drop GT-void pixels first (Video K-Net); default: whole frames (deeplab2)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, help="write the full result as JSON here")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    folder_mode = args.gt is not None or args.pred is not None
    model_mode = args.checkpoint is not None or args.onnx is not None or args.data is not None
    if folder_mode == model_mode:
        p.error(
            "use either --gt/--pred/--format (score files) or --checkpoint|--onnx with --data "
            "(run a model)"
        )
    if folder_mode and (args.gt is None or args.pred is None or args.format is None):
        p.error("scoring files needs --gt, --pred and --format")
    if model_mode and (args.data is None or (args.checkpoint is None) == (args.onnx is None)):
        p.error("running a model needs --data and exactly one of --checkpoint or --onnx")
    return args


def check_inputs(args: argparse.Namespace) -> None:
    """Paths checked before any model is loaded or file written (one clear line each)."""
    folders = {"--gt": args.gt, "--pred": args.pred, "--data": args.data}
    for flag, path in folders.items():
        if path is not None and not path.is_dir():
            raise FileNotFoundError(f"{flag} {path}: no such folder")
    files = {
        "--checkpoint": args.checkpoint,
        "--onnx": args.onnx,
        "--gt-json": args.gt_json,
        "--pred-json": args.pred_json,
    }
    for flag, path in files.items():
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")
    if args.out is not None and args.out.is_dir():
        raise IsADirectoryError(f"--out {args.out} is a folder; expected a .json file path")


def run(args: argparse.Namespace) -> dict:
    """The evaluation ``main`` runs: mode (b) or (a) from parsed arguments."""
    check_inputs(args)
    overrides = dict(
        things=args.things,
        ks=args.vpq_k,
        frame_stride=args.frame_stride,
        label_divisor=args.label_divisor,
        mask_void=args.mask_void,
    )
    if args.gt is not None:
        settings = EvalSettings.for_dataset(args.format, **overrides)
        return evaluate_folders(
            args.gt,
            args.pred,
            args.format,
            settings,
            gt_json=args.gt_json,
            pred_json=args.pred_json,
            progress=not args.no_progress,
        )
    return evaluate_dataset(
        args.data,
        args.split,
        checkpoint=args.checkpoint,
        onnx=args.onnx,
        device=args.device,
        dataset=args.format,
        max_sequences=args.max_sequences,
        max_frames=args.max_frames,
        progress=not args.no_progress,
        **overrides,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def body() -> int:
        result = run(args)
        print(format_table(result))
        if args.out is not None:
            write_text_atomic(args.out, json.dumps(result, indent=1, allow_nan=False) + "\n")
            print(f"wrote {args.out}")
        return 0

    return run_cli("evaluate.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
