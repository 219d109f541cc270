"""Validation during training: run the online pipeline over whole sequences and score them.

    scores = evaluate_model(model, reader, device="cpu")
    # {"STQ", "AQ", "SQ", "VPQ", "VPQ_thing", "VPQ_stuff", "VPQ_k0", "frames", "sequences"}

Each sequence runs frame by frame through ``VideoPanopticPipeline`` (the same merge and tracker
as deployment) with the state reset at the start of every sequence; STQ and VPQ come from
``vknet_core.metrics``. VPQ is the mean over window sizes k = 0..3 frames (``VPQ_k0`` alone too).

    python training/validate.py --checkpoint vknet_ros/models/tiny_synthetic.pt \
        --data data/synthetic --split val          # prints the scores as JSON
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.runtime import TorchBackend
from vknet_training.evaluate import EvalSettings
from vknet_training.evaluate import evaluate_model as run_online

log = logging.getLogger(__name__)

VPQ_WINDOWS: tuple[int, ...] = (0, 1, 2, 3)


def evaluate_model(model: torch.nn.Module, reader: Any, device: str = "cpu",
                   max_sequences: Optional[int] = None, max_frames: Optional[int] = None,
                   pipeline_cfg: PipelineConfig = PipelineConfig(),
                   sequences: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Score ``model`` (a ``VideoKNet``) on every sequence of ``reader`` (a ``VideoReader``).

    The scoring is ``vknet_training.evaluate``'s (one implementation for training-time
    validation and the evaluation CLI); this returns its headline numbers as a flat dict.
    The model is switched to eval mode for the run and back to its previous mode afterwards.
    """
    was_training = model.training
    lab = model.cfg.labels
    settings = EvalSettings.for_dataset(lab.dataset, labels=lab, ks=VPQ_WINDOWS, frame_stride=1)
    seqs = list(sequences if sequences is not None else reader.sequences())[:max_sequences]
    if not seqs:
        raise ValueError(f"{reader!r} has no sequence to evaluate")

    def frames(seq: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = reader.num_frames(seq)
        for idx in range(min(n, max_frames) if max_frames else n):
            yield reader.read_frame(seq, idx)

    pipe = VideoPanopticPipeline(TorchBackend(model, device), model.cfg, pipeline_cfg)
    t0 = time.perf_counter()
    try:
        res = run_online((frames(seq) for seq in seqs), pipe, settings, progress=False)
    finally:
        pipe.close()
        model.train(was_training)
    vp = res["vpq"]
    out = {
        "STQ": res["STQ"], "AQ": res["AQ"], "SQ": res["SQ"],
        "VPQ": vp["mean"]["VPQ"], "VPQ_thing": vp["mean"]["VPQ_thing"],
        "VPQ_stuff": vp["mean"]["VPQ_stuff"], "VPQ_k0": vp["k0"]["VPQ"],
        "frames": res["num_frames"], "sequences": res["num_sequences"],
    }
    log.info("validation: %d frames of %d sequences in %.1f s: STQ %.4f AQ %.4f SQ %.4f "
             "VPQ %s", out["frames"], len(seqs), time.perf_counter() - t0, out["STQ"],
             out["AQ"], out["SQ"], out["VPQ"])
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Score a vknet checkpoint on a video dataset split "
                                "(STQ, AQ, SQ, VPQ) with the online pipeline.")
    p.add_argument("--checkpoint", type=Path, required=True, help="vknet checkpoint (.pt)")
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default="val", help="split folder (default val)")
    p.add_argument("--device", default="cpu", help="cpu|cuda (default cpu)")
    p.add_argument("--max-sequences", type=int, help="only the first N sequences")
    p.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vknet_core.checkpoint import load_checkpoint
    from vknet_training.datasets import build_reader

    model = load_checkpoint(a.checkpoint)
    reader = build_reader(model.cfg.labels.dataset, a.data, a.split)
    scores = evaluate_model(model, reader, a.device, max_sequences=a.max_sequences)
    text = json.dumps(scores, indent=1)
    if a.json is not None:
        a.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
