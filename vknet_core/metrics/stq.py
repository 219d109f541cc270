"""Segmentation and Tracking Quality (STQ; Weber et al., STEP, NeurIPS 2021 D&B).

Follows deeplab2's ``STQuality`` (``evaluation/numpy/segmentation_and_tracking_quality.py``) with
exact integer counts, as defined in ``shared/reference/metrics.md`` §2:

* SQ = mIoU of a (C+1)x(C+1) semantic confusion matrix per sequence (GT-void rows dropped,
  predicted-void column kept), summed over sequences;
* AQ pools every GT tube (thing class, instance != 0, per sequence) of every sequence;
  GT thing pixels with instance 0 are crowd and ignored for both GT tubes and predicted tracks;
* STQ = sqrt(AQ * SQ).

Default: whole frames (deeplab2). ``mask_void=True`` reproduces Video K-Net's
``tools/eval_dstq_step.py``, which drops GT-void pixels from both maps first.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from vknet_core.metrics.counting import LabelSpace, Tally, check_pair, lookup

log = logging.getLogger(__name__)

_EPSILON = 1e-15


class _SequenceCounts:
    """Everything STQ keeps for one sequence: confusion matrix and three id tallies."""

    def __init__(self, size: int):
        self.confusion = np.zeros((size, size), dtype=np.int64)  # rows GT, columns prediction
        self.gt = Tally()  # GT tube id -> pixels
        self.pred = Tally()  # predicted track id -> pixels (not on GT crowd)
        self.inter = Tally()  # gt_id * offset + pred_id -> pixels
        self.num_frames = 0


class STQAccumulator:
    """Streaming STQ: call ``update(gt, pred, sequence_id)`` per frame or clip, then ``result()``.

    Args:
        num_classes: number of semantic classes C (ids 0..C-1).
        things: thing classes (those with track ids), e.g. (11, 13) for KITTI-STEP.
        label_divisor: panoptic id = semantic * label_divisor + instance.
        ignore_label: semantic id of void pixels (255; may also be < C as in deeplab2).
        mask_void: drop GT-void pixels from both maps first (Video K-Net convention); default off
            (deeplab2, whole frames).
    """

    def __init__(
        self,
        num_classes: int,
        things: Iterable[int],
        label_divisor: int = 1000,
        ignore_label: int = 255,
        mask_void: bool = False,
    ):
        self.labels = LabelSpace(num_classes, things, label_divisor, ignore_label)
        self.mask_void = bool(mask_void)
        C = self.labels.num_classes
        if ignore_label >= C:
            self._size = C + 1
            self._include = np.arange(C)
        else:
            self._size = C
            self._include = np.array([i for i in range(C) if i != ignore_label], dtype=np.int64)
        self._seqs: dict[Hashable, _SequenceCounts] = {}

    def reset(self) -> None:
        self._seqs.clear()

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence_id: Hashable = 0) -> None:
        """Add one frame ``[H,W]`` or clip ``[T,H,W]`` of panoptic ids to sequence ``sequence_id``.

        Frames of one sequence may arrive in several calls (order does not matter for STQ).
        """
        gt, pred = check_pair(gt, pred)
        L = self.labels
        sem_gt = L.semantic(gt, "gt")
        sem_pred = L.semantic(pred, "pred")
        seq = self._seqs.get(sequence_id)
        if seq is None:
            seq = self._seqs[sequence_id] = _SequenceCounts(self._size)
        seq.num_frames += 1 if gt.ndim == 2 else gt.shape[0]
        if self.mask_void:
            valid = sem_gt != L.ignore_label
            gt, pred, sem_gt, sem_pred = gt[valid], pred[valid], sem_gt[valid], sem_pred[valid]
        else:
            gt, pred, sem_gt, sem_pred = gt.ravel(), pred.ravel(), sem_gt.ravel(), sem_pred.ravel()

        # semantic confusion; the ignore label becomes index C when it lies outside the classes
        if L.ignore_label >= L.num_classes:
            cg = np.where(sem_gt == L.ignore_label, L.num_classes, sem_gt)
            cp = np.where(sem_pred == L.ignore_label, L.num_classes, sem_pred)
        else:
            cg, cp = sem_gt, sem_pred
        S = self._size
        seq.confusion += np.bincount(cg * S + cp, minlength=S * S).reshape(S, S)

        # association: GT tubes and predicted tracks on thing classes, crowd removed from both
        label_mask = L.is_thing[sem_gt]
        pred_mask = L.is_thing[sem_pred]
        crowd = label_mask & (gt % L.label_divisor == 0)
        label_mask &= ~crowd
        pred_mask &= ~crowd
        seq.gt.add(gt[label_mask])
        seq.pred.add(pred[pred_mask])
        both = label_mask & pred_mask
        seq.inter.add(gt[both] * L.offset + pred[both])

    def result(self) -> dict:
        """STQ, AQ, SQ (= IoU) over all sequences, per-sequence values and per-class IoU.

        Returns a dict: ``STQ``, ``AQ``, ``SQ``, ``IoU`` (same as SQ, deeplab2's name),
        ``STQ_per_seq``, ``AQ_per_seq``, ``IoU_per_seq`` (lists in sequence insertion order),
        ``sequence_ids``, ``num_tubes``, ``IoU_per_class`` ({class: IoU or None when absent}).
        """
        L = self.labels
        aq_sum_per_seq, tubes_per_seq, iou_per_seq = [], [], []
        total = np.zeros((self._size, self._size), dtype=np.int64)
        for seq in self._seqs.values():
            gk, gc = seq.gt.table()
            pk, pc = seq.pred.table()
            ik, ic = seq.inter.table()
            g_size = lookup(gk, gc, ik // L.offset).astype(np.float64)
            p_size = lookup(pk, pc, ik % L.offset).astype(np.float64)
            tpa = ic.astype(np.float64)
            # sum_g 1/|g| sum_p TPA^2 / (TPA + FPA + FNA), where TPA + FPA + FNA = |p| + |g| - TPA
            aq_sum_per_seq.append(float(np.sum(tpa * (tpa / (p_size + g_size - tpa)) / g_size)))
            tubes_per_seq.append(int(gk.size))
            conf = self._valid_rows(seq.confusion)
            total += conf
            iou_per_seq.append(self._miou(conf)[0])

        aq_sum = np.array(aq_sum_per_seq, dtype=np.float64)
        tubes = np.array(tubes_per_seq, dtype=np.float64)
        aq = float(aq_sum.sum() / max(tubes.sum(), _EPSILON)) if tubes.size else 0.0
        aq_per_seq = aq_sum / np.maximum(tubes, _EPSILON)
        iou, per_class = self._miou(total)
        iou_seq = np.array(iou_per_seq, dtype=np.float64)
        stq = float(np.sqrt(aq * iou))
        return {
            "STQ": stq,
            "AQ": aq,
            "SQ": iou,
            "IoU": iou,
            "STQ_per_seq": np.sqrt(aq_per_seq * iou_seq).tolist(),
            "AQ_per_seq": aq_per_seq.tolist(),
            "IoU_per_seq": iou_seq.tolist(),
            "sequence_ids": list(self._seqs),
            "num_tubes": int(tubes.sum()),
            "IoU_per_class": {int(c): per_class.get(int(c)) for c in L.categories},
        }

    def _valid_rows(self, confusion: np.ndarray) -> np.ndarray:
        """Zero the GT-void rows (predicted-void column stays, metrics.md §2.1)."""
        keep = np.zeros_like(confusion)
        keep[self._include, :] = 1
        return confusion * keep

    def _miou(self, confusion: np.ndarray) -> tuple[float, dict[int, float]]:
        """Mean IoU over indices with a non-empty union, and IoU per such class index."""
        inter = confusion.diagonal()
        unions = confusion.sum(axis=0) + confusion.sum(axis=1) - inter
        present = unions > 0
        if not present.any():
            return float("nan"), {}
        ious = inter[present] / unions[present].astype(np.float64)
        per_class = {
            int(i): float(v)
            for i, v in zip(np.flatnonzero(present), ious)
            if i < self.labels.num_classes
        }
        return float(ious.sum() / present.sum()), per_class


def stq(
    gt_videos: Sequence[np.ndarray],
    pred_videos: Sequence[np.ndarray],
    num_classes: int,
    things: Iterable[int],
    label_divisor: int = 1000,
    ignore_label: int = 255,
    mask_void: bool = False,
) -> dict:
    """STQ of whole videos.

    Args:
        gt_videos: per sequence, int array [T, H, W] of GT panoptic ids
            (semantic * divisor + instance).
        pred_videos: per sequence, int array [T, H, W] of predicted panoptic ids, same shapes.
        num_classes, things, label_divisor, ignore_label, mask_void: see ``STQAccumulator``.

    Returns:
        ``STQAccumulator.result()``: ``STQ``, ``AQ``, ``SQ``, per-sequence lists, per-class IoU.
    """
    if len(gt_videos) != len(pred_videos):
        raise ValueError(f"got {len(gt_videos)} GT videos but {len(pred_videos)} predicted videos")
    acc = STQAccumulator(num_classes, things, label_divisor, ignore_label, mask_void=mask_void)
    for i, (g, p) in enumerate(zip(gt_videos, pred_videos)):
        g, p = np.asarray(g), np.asarray(p)
        if g.ndim != 3:
            raise ValueError(f"video {i}: expected [T,H,W] panoptic ids, got shape {g.shape}")
        acc.update(g, p, sequence_id=i)
    return acc.result()
