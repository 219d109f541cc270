"""Validation during training: a model's headline scores on whole sequences of a reader.

    scores = validate_model(model, reader, device="cpu")
    # {"STQ", "AQ", "SQ", "VPQ", "VPQ_thing", "VPQ_stuff", "VPQ_k0", "frames", "sequences"}

The evaluation itself is ``evaluate.evaluate_model`` (the same online pipeline, merge and
tracker as deployment, state reset at the start of every sequence). The VPQ windows are the
dataset's (``eval_settings.DATASET_WINDOWS``: KITTI-STEP k = 0..3, Cityscapes-VPS 0, 5, 10, 15,
VIPSeg 0, 1, 3, 5, 7); ``VPQ`` is their mean and ``VPQ_k0`` the single-frame window.

    python training/validate.py --checkpoint vknet_ros/models/tiny_synthetic.pt \
        --data data/synthetic --split val          # prints the scores as JSON
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from vknet_core.atomic import write_text_atomic
from vknet_core.cli import ArgumentParser, run_cli
from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.runtime import TorchBackend
from vknet_training.eval_settings import EvalSettings
from vknet_training.evaluate import (
    check_label_space,
    evaluate_model,
    open_reader,
    reader_sequences,
)

log = logging.getLogger(__name__)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The flat scores logged per validation (``metrics.jsonl``) from an evaluation result."""
    vp = result["vpq"]
    return {
        "STQ": result["STQ"],
        "AQ": result["AQ"],
        "SQ": result["SQ"],
        "VPQ": vp["mean"]["VPQ"],
        "VPQ_thing": vp["mean"]["VPQ_thing"],
        "VPQ_stuff": vp["mean"]["VPQ_stuff"],
        "VPQ_k0": vp["k0"]["VPQ"],
        "frames": result["num_frames"],
        "sequences": result["num_sequences"],
    }


def validate_model(
    model: torch.nn.Module,
    reader: Any,
    device: str = "cpu",
    max_sequences: Optional[int] = None,
    max_frames: Optional[int] = None,
    pipeline_cfg: PipelineConfig = PipelineConfig(),
    sequences: Optional[Sequence[int]] = None,
) -> dict[str, Any]:
    """Score ``model`` (a ``VideoKNet``) on the sequences of ``reader`` (a ``VideoReader``).

    The model is switched to eval mode for the run and back to its previous mode afterwards.
    """
    was_training = model.training
    lab = model.cfg.labels
    check_label_space(lab, lab.dataset)
    settings = EvalSettings.for_dataset(lab.dataset, labels=lab)  # the dataset's VPQ windows
    seqs = list(sequences if sequences is not None else reader.sequences())[:max_sequences]
    if not seqs:
        raise ValueError(f"{reader!r} has no sequence to evaluate")
    frames, total = reader_sequences(reader, seqs, settings.label_divisor, max_frames)
    pipe = VideoPanopticPipeline(TorchBackend(model, device), model.cfg, pipeline_cfg)
    t0 = time.perf_counter()
    try:
        out = headline(evaluate_model(frames, pipe, settings, progress=False, total_frames=total))
    finally:
        pipe.close()
        model.train(was_training)
    log.info(
        "validation: %d frames of %d sequences in %.1f s: STQ %.4f AQ %.4f SQ %.4f VPQ %s",
        out["frames"],
        len(seqs),
        time.perf_counter() - t0,
        out["STQ"],
        out["AQ"],
        out["SQ"],
        out["VPQ"],
    )
    return out


def validate_checkpoint(
    checkpoint: Path,
    data: Path,
    split: str = "val",
    device: str = "cpu",
    max_sequences: Optional[int] = None,
) -> dict[str, Any]:
    """Load ``checkpoint`` and score it on ``split`` of ``data`` (the checkpoint's dataset)."""
    from vknet_core.checkpoint import load_checkpoint

    if not Path(data).is_dir():
        raise FileNotFoundError(f"--data {data}: no such folder (expected a dataset root)")
    model = load_checkpoint(checkpoint)
    reader = open_reader(model.cfg.labels.dataset, data, split, model.cfg.name)
    return validate_model(model, reader, device, max_sequences=max_sequences)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(
        prog="validate.py",
        description="Score a vknet checkpoint on a video "
        "dataset split (STQ, AQ, SQ, VPQ) with the online pipeline.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="vknet checkpoint (.pt)")
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default="val", help="split folder (default val)")
    p.add_argument("--device", default="cpu", help="cpu|cuda (default cpu)")
    p.add_argument("--max-sequences", type=int, help="only the first N sequences")
    p.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def body() -> int:
        scores = validate_checkpoint(a.checkpoint, a.data, a.split, a.device, a.max_sequences)
        text = json.dumps(scores, indent=1)
        if a.json is not None:
            write_text_atomic(a.json, text + "\n")
        print(text)
        return 0

    return run_cli("validate.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
