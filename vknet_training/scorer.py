"""STQ and VPQ accumulated together over sequences, frame by frame (``metrics.md``).

scorer = Scorer(EvalSettings.for_dataset("kitti_step"))
scorer.update(gt, pred, sequence_id)      # int [H, W] panoptic maps, time order
result = scorer.result()                  # strict-JSON dict (NaN -> None)
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import asdict
from typing import Any

import numpy as np

from vknet_core.metrics import STQAccumulator, VPQAccumulator
from vknet_training.eval_settings import EvalSettings


class Scorer:
    """STQ and VPQ accumulated together, frame by frame, one sequence after another."""

    def __init__(self, s: EvalSettings):
        self.settings = s
        self.stq = STQAccumulator(
            s.num_classes, s.things, s.label_divisor, s.ignore_label, mask_void=s.mask_void
        )
        self.vpq = VPQAccumulator(
            s.num_classes,
            s.things,
            s.label_divisor,
            s.ignore_label,
            ks=s.ks,
            frame_stride=s.frame_stride,
        )
        self.num_frames = 0
        self.sequences: list[Hashable] = []

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence_id: Hashable) -> None:
        if not self.sequences or self.sequences[-1] != sequence_id:
            if self.sequences:
                self.vpq.end_sequence(self.sequences[-1])
            self.sequences.append(sequence_id)
        self.stq.update(gt, pred, sequence_id)
        self.vpq.update(gt, pred, sequence_id)
        self.num_frames += 1

    def result(self) -> dict:
        s = self.settings
        st, vp = self.stq.result(), self.vpq.result()
        per_class = {}
        for c, name in enumerate(s.class_names):
            if c == s.ignore_label:
                continue
            per_class[str(c)] = {
                "name": name,
                "thing": c in s.things,
                "IoU": st["IoU_per_class"].get(c),
                "PQ": {
                    k: (vp[k]["per_class"].get(str(c)) or {}).get("pq") for k in vp if k != "mean"
                },
            }
        return strict_json(
            {
                "format": s.dataset,
                "num_sequences": len(self.sequences),
                "num_frames": self.num_frames,
                "settings": asdict(s),
                "STQ": st["STQ"],
                "AQ": st["AQ"],
                "SQ": st["SQ"],
                "VPQ": vp["mean"]["VPQ"],
                "stq": {k: v for k, v in st.items() if k != "IoU_per_class"},
                "vpq": vp,
                "per_class": per_class,
            }
        )


def strict_json(x: Any) -> Any:
    """NaN -> None and non-str keys -> str, so the result is strict JSON."""
    if isinstance(x, dict):
        return {str(k): strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return strict_json(x.item())
    return x
