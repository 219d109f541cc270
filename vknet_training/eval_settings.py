"""Label space and metric conventions of one evaluation, with each dataset's defaults.

VPQ windows are frame gaps between annotated frames (``metrics.md``): KITTI-STEP k = 0..3
(every frame annotated, n = k + 1), Cityscapes-VPS k = 0, 5, 10, 15 (every 5th frame
annotated, so the frames a reader returns are 5 apart), VIPSeg k = 0, 1, 3, 5, 7
(n = 1, 2, 4, 6, 8). Training-time validation and ``evaluate.py`` both take them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from vknet_core.config import LabelConfig, get_preset

DATASET_PRESETS = {
    "kitti_step": "kitti_step_r50",
    "cityscapes_vps": "cityscapes_vps_r50",
    "vipseg": "vipseg_r50",
}
# (ks, frame_stride): VPQ windows as frame gaps, and the gap between consecutive annotated frames
DATASET_WINDOWS = {
    "kitti_step": ((0, 1, 2, 3), 1),
    "cityscapes_vps": ((0, 5, 10, 15), 5),
    "vipseg": ((0, 1, 3, 5, 7), 1),
}


@dataclass(frozen=True)
class EvalSettings:
    """Label space and metric conventions of one evaluation."""

    dataset: str
    class_names: tuple[str, ...]
    things: tuple[int, ...]
    label_divisor: int = 1000
    ignore_label: int = 255
    ks: tuple[int, ...] = (0,)
    frame_stride: int = 1
    mask_void: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @staticmethod
    def for_dataset(
        dataset: str,
        labels: Optional[LabelConfig] = None,
        things: Optional[Sequence[int]] = None,
        ks: Optional[Sequence[int]] = None,
        frame_stride: Optional[int] = None,
        label_divisor: Optional[int] = None,
        mask_void: bool = False,
    ) -> EvalSettings:
        """Defaults of ``dataset`` (its preset's labels, VPQ windows), with explicit overrides."""
        if dataset not in DATASET_PRESETS:
            raise ValueError(
                f"unknown dataset format {dataset!r}; expected one of {sorted(DATASET_PRESETS)}"
            )
        labels = labels or get_preset(DATASET_PRESETS[dataset]).labels
        dks, dstride = DATASET_WINDOWS[dataset]
        return EvalSettings(
            dataset=dataset,
            class_names=tuple(labels.class_names),
            things=tuple(int(t) for t in (labels.thing_train_ids if things is None else things)),
            label_divisor=int(label_divisor or labels.label_divisor),
            ignore_label=int(labels.ignore_label),
            ks=tuple(int(k) for k in (dks if ks is None else ks)),
            frame_stride=int(dstride if frame_stride is None else frame_stride),
            mask_void=mask_void,
        )
