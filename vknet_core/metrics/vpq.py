"""Video Panoptic Quality (VPQ; Kim et al., VPSNet, CVPR 2020), the official mcahny/vps algorithm.

Exactly ``tools/eval_vpq.py`` (``vpq_compute_single_core`` + ``PQStat.pq_average``) on our
panoptic-id arrays, as defined in ``shared/reference/metrics.md`` §3.1:

* segment id = panoptic id + 1; GT and predicted ignore pixels are VOID; GT thing pixels with
  instance 0 form one crowd segment per class;
* a window is n consecutive (annotated) frames, stride 1; a tube is a segment's pixels over the
  window;
* TP: same class, GT not crowd, IoU > 0.5 strictly, with the prediction's overlap with GT VOID
  removed from the union; FN: unmatched non-crowd GT; FP: unmatched predictions except those
  more than half on GT VOID + the same class's GT crowd;
* TP/FP/FN/IoU sums per class are pooled over all windows of all videos, PQ per class, then the
  mean over classes with TP+FP+FN > 0 (``None`` when a group has no such class).

Window length for ``k``: ``n = k // frame_stride + 1``; ``frame_stride`` is the spacing of
annotated frames (Cityscapes-VPS: 5, so k in {0, 5, 10, 15} gives n in {1, 2, 3, 4};
KITTI-STEP: 1).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from vknet_core.metrics.counting import LabelSpace, check_pair, sum_by_key, unique_counts

log = logging.getLogger(__name__)


class _ClassStats:
    """Per-class TP/FP/FN counts (int64) and IoU sums (float64) for one window length."""

    def __init__(self, num_semantic: int):
        self.tp = np.zeros(num_semantic, dtype=np.int64)
        self.fp = np.zeros(num_semantic, dtype=np.int64)
        self.fn = np.zeros(num_semantic, dtype=np.int64)
        self.iou = np.zeros(num_semantic, dtype=np.float64)
        self.num_windows = 0


class VPQAccumulator:
    """Streaming VPQ for one or more window lengths.

    Call ``update(gt, pred, sequence_id)`` with the frames of each sequence **in temporal order**
    (one frame [H,W] or a clip [T,H,W] per call); every complete window ending at a new frame is
    scored at once, so only the last ``max(n)`` frames' pair counts are kept per open sequence
    (``end_sequence`` frees them). ``result()`` returns ``{"k0": {...}, ..., "mean": {...}}``.

    Args:
        num_classes, things, label_divisor, ignore_label: label space (see ``STQAccumulator``).
        ks: window sizes as frame gaps, e.g. (0, 5, 10, 15) for Cityscapes-VPS.
        frame_stride: spacing of the frames passed in, in the units of ``ks``.
    """

    def __init__(
        self,
        num_classes: int,
        things: Iterable[int],
        label_divisor: int = 1000,
        ignore_label: int = 255,
        ks: Sequence[int] = (0,),
        frame_stride: int = 1,
    ):
        self.labels = LabelSpace(num_classes, things, label_divisor, ignore_label)
        if frame_stride <= 0:
            raise ValueError(f"frame_stride must be positive, got {frame_stride}")
        ks = tuple(int(k) for k in ks)
        if not ks or any(k < 0 or k % frame_stride for k in ks):
            raise ValueError(
                f"ks must be non-empty multiples of frame_stride={frame_stride} (>= 0), got {ks}"
            )
        self.ks = ks
        self.frame_stride = int(frame_stride)
        self._n = {k: k // frame_stride + 1 for k in ks}
        self._stats = {k: _ClassStats(self.labels.num_semantic) for k in ks}
        self._recent: dict[Hashable, deque] = {}

    def reset(self) -> None:
        self._stats = {k: _ClassStats(self.labels.num_semantic) for k in self.ks}
        self._recent.clear()

    def end_sequence(self, sequence_id: Hashable) -> None:
        """Forget the kept frames of a finished sequence (its windows are already scored)."""
        self._recent.pop(sequence_id, None)

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence_id: Hashable = 0) -> None:
        """Append one frame [H,W] or clip [T,H,W] (GT and predicted panoptic ids) to a sequence."""
        gt, pred = check_pair(gt, pred)
        if gt.ndim == 2:
            gt, pred = gt[None], pred[None]
        recent = self._recent.get(sequence_id)
        if recent is None:
            recent = self._recent[sequence_id] = deque(maxlen=max(self._n.values()))
        for g, p in zip(gt, pred):
            recent.append(self._frame_pairs(g, p))
            for k, n in self._n.items():
                if len(recent) >= n:
                    frames = list(recent)[-n:]
                    keys, counts = sum_by_key([f[0] for f in frames], [f[1] for f in frames])
                    self._score_window(keys, counts, self._stats[k])

    def _frame_pairs(self, gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(gt_segment * offset + pred_segment) -> pixel count for one frame; segment 0 = VOID."""
        L = self.labels
        sem_gt = L.semantic(gt, "gt")
        sem_pred = L.semantic(pred, "pred")
        seg_gt = np.where(sem_gt == L.ignore_label, 0, gt + 1)
        seg_pred = np.where(sem_pred == L.ignore_label, 0, pred + 1)
        return unique_counts(seg_gt * L.offset + seg_pred)

    def _score_window(self, keys: np.ndarray, counts: np.ndarray, st: _ClassStats) -> None:
        """One window: match tubes and add TP/FP/FN/IoU per class (vpq_compute_single_core)."""
        L = self.labels
        D = L.label_divisor
        st.num_windows += 1
        g = keys // L.offset  # GT segment per pair (0 = VOID)
        p = keys % L.offset  # predicted segment per pair (0 = VOID)

        # tube areas (pairs include VOID on the other side, so these are full areas)
        gt_ids, g_inv = np.unique(g, return_inverse=True)
        gt_area = np.zeros(gt_ids.size, dtype=np.int64)
        np.add.at(gt_area, g_inv.ravel(), counts)
        pr_ids, p_inv = np.unique(p, return_inverse=True)
        pr_area = np.zeros(pr_ids.size, dtype=np.int64)
        np.add.at(pr_area, p_inv.ravel(), counts)

        gt_cat = (gt_ids - 1) // D  # meaningless for VOID (id 0), masked below
        gt_real = gt_ids > 0
        gt_crowd = gt_real & L.is_thing[np.where(gt_real, gt_cat, 0)] & ((gt_ids - 1) % D == 0)
        pr_cat = (pr_ids - 1) // D
        pr_real = pr_ids > 0

        # predicted overlap with GT VOID, per predicted segment
        void_pairs = (g == 0) & (p > 0)
        void_overlap = np.zeros(pr_ids.size, dtype=np.int64)
        np.add.at(void_overlap, np.searchsorted(pr_ids, p[void_pairs]), counts[void_pairs])

        # matching: same class, GT not crowd, IoU > 0.5 (unique, so no assignment step)
        gi = np.searchsorted(gt_ids, g)
        pi = np.searchsorted(pr_ids, p)
        cand = (g > 0) & (p > 0)
        cand &= ~gt_crowd[gi]
        cand &= gt_cat[gi] == pr_cat[pi]
        union = pr_area[pi[cand]] + gt_area[gi[cand]] - counts[cand] - void_overlap[pi[cand]]
        iou = counts[cand] / union.astype(np.float64)
        match = iou > 0.5
        m_cat = gt_cat[gi[cand][match]]
        st.tp += np.bincount(m_cat, minlength=L.num_semantic)
        st.iou += np.bincount(m_cat, weights=iou[match], minlength=L.num_semantic)
        gt_matched = np.zeros(gt_ids.size, dtype=bool)
        gt_matched[gi[cand][match]] = True
        pr_matched = np.zeros(pr_ids.size, dtype=bool)
        pr_matched[pi[cand][match]] = True

        # FN: unmatched, non-crowd GT tubes
        fn = gt_real & ~gt_matched & ~gt_crowd
        st.fn += np.bincount(gt_cat[fn], minlength=L.num_semantic)

        # FP: unmatched predictions, unless > 50 % of them lies on GT VOID + same-class GT crowd
        crowd_pairs = (g > 0) & (p > 0)
        crowd_pairs &= gt_crowd[gi]
        crowd_pairs &= gt_cat[gi] == pr_cat[pi]
        ignored = void_overlap.copy()
        np.add.at(ignored, pi[crowd_pairs], counts[crowd_pairs])
        fp = pr_real & ~pr_matched & ~(ignored / np.maximum(pr_area, 1) > 0.5)
        st.fp += np.bincount(pr_cat[fp], minlength=L.num_semantic)

    def result(self) -> dict:
        """Per window length ``k{k}``: ``VPQ``, ``VPQ_thing``, ``VPQ_stuff``, ``SQ``, ``RQ``,
        ``n_classes``, ``num_windows``, ``per_class`` ({class: tp, fp, fn, iou, pq, sq, rq} for
        classes with TP+FP+FN > 0); plus ``mean`` = average over ``ks`` (``None`` if any is None).
        Values are fractions in [0, 1] (the reference prints x100).
        """
        out: dict = {}
        for k in self.ks:
            out[f"k{k}"] = self._summarise(self._stats[k])
        mean = {}
        for key in ("VPQ", "VPQ_thing", "VPQ_stuff"):
            vals = [out[f"k{k}"][key] for k in self.ks]
            mean[key] = None if any(v is None for v in vals) else float(np.mean(vals))
        out["mean"] = mean
        return out

    def _summarise(self, st: _ClassStats) -> dict:
        L = self.labels
        cats = L.categories
        per_class: dict[str, dict] = {}
        groups = {"All": [], "Things": [], "Stuff": []}
        for c in cats:
            tp, fp, fn, iou = int(st.tp[c]), int(st.fp[c]), int(st.fn[c]), float(st.iou[c])
            if tp + fp + fn == 0:
                continue
            denom = tp + 0.5 * fp + 0.5 * fn
            row = {
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "iou": iou,
                "pq": iou / denom,
                "sq": iou / tp if tp else 0.0,
                "rq": tp / denom,
            }
            per_class[str(int(c))] = row
            groups["All"].append(row)
            groups["Things" if L.is_thing[c] else "Stuff"].append(row)

        def avg(rows: list[dict], key: str) -> float | None:
            return float(sum(r[key] for r in rows) / len(rows)) if rows else None

        return {
            "VPQ": avg(groups["All"], "pq"),
            "VPQ_thing": avg(groups["Things"], "pq"),
            "VPQ_stuff": avg(groups["Stuff"], "pq"),
            "SQ": avg(groups["All"], "sq"),
            "RQ": avg(groups["All"], "rq"),
            "n_classes": {name: len(rows) for name, rows in groups.items()},
            "num_windows": st.num_windows,
            "per_class": per_class,
        }


def vpq_windows(
    gt_videos: Sequence[np.ndarray],
    pred_videos: Sequence[np.ndarray],
    num_classes: int,
    things: Iterable[int],
    label_divisor: int = 1000,
    ignore_label: int = 255,
    ks: Sequence[int] = (0, 1, 2, 3),
    frame_stride: int = 1,
) -> dict:
    """VPQ of whole videos for several window sizes: ``{"k0": {...}, ..., "mean": {...}}``."""
    if len(gt_videos) != len(pred_videos):
        raise ValueError(f"got {len(gt_videos)} GT videos but {len(pred_videos)} predicted videos")
    acc = VPQAccumulator(
        num_classes, things, label_divisor, ignore_label, ks=ks, frame_stride=frame_stride
    )
    for i, (g, p) in enumerate(zip(gt_videos, pred_videos)):
        g, p = np.asarray(g), np.asarray(p)
        if g.ndim != 3:
            raise ValueError(f"video {i}: expected [T,H,W] panoptic ids, got shape {g.shape}")
        acc.update(g, p, sequence_id=i)
        acc.end_sequence(i)
    return acc.result()


def vpq(
    gt_videos: Sequence[np.ndarray],
    pred_videos: Sequence[np.ndarray],
    num_classes: int,
    things: Iterable[int],
    label_divisor: int = 1000,
    ignore_label: int = 255,
    k: int = 0,
    frame_stride: int = 1,
) -> dict:
    """VPQ of whole videos for one window: windows of ``n = k // frame_stride + 1`` frames.

    Args:
        gt_videos: per sequence, int array [T, H, W] of GT panoptic ids
            (semantic * divisor + instance).
        pred_videos: per sequence, int array [T, H, W] of predicted panoptic ids, same shapes.
        num_classes, things, label_divisor, ignore_label: label space.
        k: window size as a frame gap (0 = single frames).
        frame_stride: spacing of the given frames in units of ``k`` (Cityscapes-VPS: 5).

    Returns:
        ``VPQ``, ``VPQ_thing``, ``VPQ_stuff`` (None when the group has no scored class), ``SQ``,
        ``RQ``, ``n_classes``, ``num_windows`` and ``per_class``.
    """
    return vpq_windows(
        gt_videos,
        pred_videos,
        num_classes,
        things,
        label_divisor,
        ignore_label,
        ks=(k,),
        frame_stride=frame_stride,
    )[f"k{k}"]
