"""QDTrack quasi-dense embedding tracker with bi-softmax matching (video_knet.md §7.3-§7.4).

n detections per frame (boxes, scores, labels, E-dim embeddings), M memory entries (live
tracklets, then the backdrops of the last frames). Plain NumPy, float32 like the official torch
code, deterministic ids recycled by ``id_pool.IdPool``, ``reset()`` between sequences.

Memory is bounded: a tracklet not updated for ``memo_tracklet_frames`` frames is deleted and only
``memo_backdrop_frames`` backdrop sets are kept, so M <= (tracklet frames + backdrop frames) x n.

Detection indices are carried through: ``TrackResult.ids[i]`` is the id of input row ``i``.
The official glue paints the tracker's sorted, de-duplicated output onto the masks in segment
order, which shifts ids onto the wrong masks after a dropped duplicate (video_knet.md §12
item 12);
``TrackResult.track_ids(official_paint_order=True)`` reproduces that for parity only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from vknet_core.tracking.id_pool import MAX_TRACK_ID, IdPool

MATCH_METRICS = ("bisoftmax", "softmax", "cosine")


@dataclass(frozen=True)
class TrackerConfig:
    """Official KITTI-STEP tracker settings (MAIN L62-75)."""

    init_score_thr: float = 0.35  # min score to start a new track
    obj_score_thr: float = 0.3  # min score to take over a matched id; picks the dedup IoU thr
    match_score_thr: float = 0.5  # min bi-softmax score for a match
    memo_tracklet_frames: int = 5  # a track is deleted when not updated for >= this many frames
    memo_backdrop_frames: int = 1  # backdrop sets kept
    memo_momentum: float = 0.8  # weight of the new embedding in the memory update
    nms_conf_thr: float = 0.5  # low-score detection matched above this is suppressed (id -2)
    nms_backdrop_iou_thr: float = 0.3  # dedup IoU for scores < obj_score_thr, and for backdrops
    nms_class_iou_thr: float = 0.7  # dedup IoU for scores >= obj_score_thr
    with_cats: bool = True  # match only within the same class
    match_metric: str = "bisoftmax"
    official_paint_order: bool = False  # parity only: paint output-order ids in segment order

    def __post_init__(self) -> None:
        if self.match_metric not in MATCH_METRICS:
            raise ValueError(f"match_metric must be one of {MATCH_METRICS}, "
                             f"got {self.match_metric!r}")
        if not 0.0 <= self.memo_momentum <= 1.0:
            raise ValueError(f"memo_momentum must be in [0, 1], got {self.memo_momentum}")
        if self.memo_tracklet_frames < 0 or self.memo_backdrop_frames < 0:
            raise ValueError("memo_tracklet_frames and memo_backdrop_frames must be >= 0, got "
                             f"{self.memo_tracklet_frames}, {self.memo_backdrop_frames}")


@dataclass
class TrackResult:
    """One frame's association.

    ids:     [n] int64, raw id per input row: >= 0 track id, -1 none (low score or removed as a
             duplicate), -2 suppressed (low-score detection matching a live track)
    kept:    [n] bool, False for rows removed as duplicates before matching
    out_src: [m] int64, input row of each tracker output row (descending score, duplicates removed)
    out_ids: [m] int64, raw ids in output order (what the official ``match`` returns)
    """

    ids: np.ndarray
    kept: np.ndarray
    out_src: np.ndarray
    out_ids: np.ndarray

    def track_ids(self, official_paint_order: bool = False) -> np.ndarray:
        """[n] int64 1-based track id per input row, 0 = none.

        official_paint_order: give row i the i-th *output* id instead (the official painting,
        misaligned after a dropped duplicate; the last rows then get 0).
        """
        final = np.where(self.out_ids >= 0, self.out_ids + 1, 0).astype(np.int64)
        n = self.ids.shape[0]
        if official_paint_order:
            out = np.zeros(n, np.int64)
            out[: final.shape[0]] = final
            return out
        return np.where(self.ids >= 0, self.ids + 1, 0).astype(np.int64)


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """mmdet ``bbox_overlaps`` (mode iou, no +1): [n,4] x [m,4] -> [n,m] float32."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # [n, m, 2]
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    overlap = wh[..., 0] * wh[..., 1]
    union = np.maximum(area_a[:, None] + area_b[None, :] - overlap, np.float32(eps))
    return (overlap / union).astype(np.float32)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class QuasiDenseTracker:
    """Stateful tracker: ``update`` once per frame with detections, ``reset`` per sequence."""

    def __init__(self, cfg: TrackerConfig = TrackerConfig(), max_track_id: int = MAX_TRACK_ID):
        self.cfg = cfg
        # published ids 1..max_track_id are raw ids 0..max_track_id-1, recycled (id_pool.py)
        self.id_pool = IdPool(size=max_track_id, first=0)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 0 (a new sequence)."""
        self.num_tracks = 0  # tracks started in this sequence
        self.id_pool.reset()
        # id -> {"embed": [E] f32, "label": int, "last_frame": int}; insertion order = memo order
        self.tracklets: dict[int, dict] = {}
        self.backdrops: list[tuple[np.ndarray, np.ndarray]] = []  # newest first: (embeds, labels)
        self._next_frame = 0

    @property
    def num_live(self) -> int:
        return len(self.tracklets)

    def _memo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids [M] i64, embeds [M,E] f32, labels [M] i64): tracklets, then backdrops (id -1)."""
        ids = [np.array(list(self.tracklets), np.int64)]
        embeds = [np.stack([t["embed"] for t in self.tracklets.values()])]
        labels = [np.array([t["label"] for t in self.tracklets.values()], np.int64)]
        for b_embeds, b_labels in self.backdrops:
            if not len(b_labels):
                continue
            ids.append(np.full(len(b_labels), -1, np.int64))
            embeds.append(b_embeds)
            labels.append(b_labels)
        return np.concatenate(ids), np.concatenate(embeds), np.concatenate(labels)

    def _scores(self, embeds: np.ndarray, memo_embeds: np.ndarray) -> np.ndarray:
        if self.cfg.match_metric == "cosine":
            a = embeds / np.maximum(np.linalg.norm(embeds, axis=1, keepdims=True), 1e-12)
            b = memo_embeds / np.maximum(np.linalg.norm(memo_embeds, axis=1, keepdims=True),
                                         1e-12)
            return (a @ b.T).astype(np.float32)
        feats = embeds @ memo_embeds.T  # [n, M] raw dot products
        if self.cfg.match_metric == "softmax":
            return _softmax(feats, 1)
        return (_softmax(feats, 1) + _softmax(feats, 0)) / np.float32(2)  # bi-softmax

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
               embeds: np.ndarray, frame_id: Optional[int] = None) -> TrackResult:
        """Associate one frame's detections.

        boxes:  [n, 4] float (x1, y1, x2, y2); scores: [n] float; labels: [n] int (class);
        embeds: [n, E] float association embeddings; frame_id: index within the sequence
        (default: one more than the last call's).
        n = 0 only ages the memory (stale tracks are deleted, backdrops expire), as the official
        tracker does for an empty frame; the official glue skips such frames, so a track hidden
        in frames without any detection would otherwise live on.
        """
        cfg = self.cfg
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        labels = np.asarray(labels, np.int64).reshape(-1)
        embeds = np.asarray(embeds, np.float32)
        n = boxes.shape[0]
        if n == 0 and embeds.size == 0:
            embeds = embeds.reshape(0, 0)
        if scores.shape[0] != n or labels.shape[0] != n or embeds.ndim != 2 \
                or embeds.shape[0] != n:
            raise ValueError(f"tracker inputs disagree: boxes {boxes.shape}, scores "
                             f"{scores.shape}, labels {labels.shape}, embeds {embeds.shape}; "
                             "expected [n,4], [n], [n], [n,E]")
        frame_id = self._next_frame if frame_id is None else int(frame_id)
        self._next_frame = frame_id + 1
        empty = np.zeros(0, np.int64)
        if n == 0:
            self._update_memo(empty, boxes, embeds, labels, frame_id)
            return TrackResult(empty, np.zeros(0, bool), empty, empty)

        # 1. sort by score, remove duplicates against *all* earlier boxes (kept or not)
        order = np.argsort(-scores, kind="stable")
        b, s = boxes[order], scores[order]
        ious = box_iou(b, b)
        valid = np.ones(n, bool)
        obj_thr = np.float32(cfg.obj_score_thr)
        for i in range(1, n):
            thr = cfg.nms_backdrop_iou_thr if s[i] < obj_thr else cfg.nms_class_iou_thr
            if (ious[i, :i] > np.float32(thr)).any():
                valid[i] = False
        src = order[valid]
        b, s, lab, emb = boxes[src], scores[src], labels[src], embeds[src]
        m = src.shape[0]
        ids = np.full(m, -1, np.int64)

        # 2. match against live tracklets + backdrops
        if m > 0 and self.tracklets:
            memo_ids, memo_embeds, memo_labels = self._memo()
            sc = self._scores(emb, memo_embeds)  # [m, M]
            if cfg.with_cats:
                sc = sc * (lab[:, None] == memo_labels[None, :]).astype(np.float32)
            for i in range(m):
                j = int(np.argmax(sc[i]))
                conf = sc[i, j]
                tid = int(memo_ids[j])
                if conf > np.float32(cfg.match_score_thr) and tid > -1:
                    if s[i] > obj_thr:
                        ids[i] = tid
                        sc[:i, j] = 0
                        sc[i + 1:, j] = 0
                    elif conf > np.float32(cfg.nms_conf_thr):
                        ids[i] = -2

        # 3. new tracks for confident unmatched detections
        new = (ids == -1) & (s > np.float32(cfg.init_score_thr))
        k = int(new.sum())
        ids[new] = self.id_pool.acquire(k)
        self.num_tracks += k

        self._update_memo(ids, b, emb, lab, frame_id)
        per_row = np.full(n, -1, np.int64)
        per_row[src] = ids
        return TrackResult(ids=per_row, kept=valid[np.argsort(order, kind="stable")],
                           out_src=src.astype(np.int64), out_ids=ids.copy())

    def _update_memo(self, ids: np.ndarray, boxes: np.ndarray, embeds: np.ndarray,
                     labels: np.ndarray, frame_id: int) -> None:
        cfg = self.cfg
        mom = np.float32(cfg.memo_momentum)
        for i in np.nonzero(ids > -1)[0]:
            tid = int(ids[i])
            t = self.tracklets.get(tid)
            if t is None:
                self.tracklets[tid] = {"embed": embeds[i].copy(), "label": int(labels[i]),
                                       "last_frame": frame_id}
            else:
                t["embed"] = (np.float32(1 - cfg.memo_momentum) * t["embed"]
                              + mom * embeds[i]).astype(np.float32)
                t["label"] = int(labels[i])
                t["last_frame"] = frame_id
        # backdrops: unassigned detections not overlapping an earlier detection
        back = np.nonzero(ids == -1)[0]
        if back.size:
            ious = box_iou(boxes[back], boxes)
            keep = np.array([not (ious[r, :ind] > np.float32(cfg.nms_backdrop_iou_thr)).any()
                             for r, ind in enumerate(back)], bool)
            back = back[keep]
        self.backdrops.insert(0, (embeds[back].copy(), labels[back].copy()))
        stale = [k for k, v in self.tracklets.items()
                 if frame_id - v["last_frame"] >= cfg.memo_tracklet_frames]
        for k in stale:
            del self.tracklets[k]
        self.id_pool.release(stale)
        if len(self.backdrops) > cfg.memo_backdrop_frames:
            self.backdrops.pop()
