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
            raise ValueError(
                f"match_metric must be one of {MATCH_METRICS}, got {self.match_metric!r}"
            )
        if not 0.0 <= self.memo_momentum <= 1.0:
            raise ValueError(f"memo_momentum must be in [0, 1], got {self.memo_momentum}")
        if self.memo_tracklet_frames < 0 or self.memo_backdrop_frames < 0:
            raise ValueError(
                "memo_tracklet_frames and memo_backdrop_frames must be >= 0, got "
                f"{self.memo_tracklet_frames}, {self.memo_backdrop_frames}"
            )


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
    """Stateful tracker: ``update`` once per frame with detections, ``reset`` per sequence.

    The memory is kept as arrays in memo order (T live tracklets: ids, embeddings, labels, last
    frame), so an update is a handful of vectorised steps; only matching conflicts (two
    detections wanting one tracklet) are resolved row by row.
    """

    def __init__(self, cfg: TrackerConfig = TrackerConfig(), max_track_id: int = MAX_TRACK_ID):
        self.cfg = cfg
        # published ids 1..max_track_id are raw ids 0..max_track_id-1, recycled (id_pool.py)
        self.id_pool = IdPool(size=max_track_id, first=0)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 0 (a new sequence)."""
        self.num_tracks = 0  # tracks started in this sequence
        self.id_pool.reset()
        self._ids = np.zeros(0, np.int64)  # [T] track ids, memo (insertion) order
        self._embeds: Optional[np.ndarray] = None  # [T, E] float32
        self._labels = np.zeros(0, np.int64)  # [T]
        self._last = np.zeros(0, np.int64)  # [T] frame of the last update
        self.backdrops: list[tuple[np.ndarray, np.ndarray]] = []  # newest first: (embeds, labels)
        self._next_frame = 0

    @property
    def num_live(self) -> int:
        return int(self._ids.shape[0])

    @property
    def live_ids(self) -> np.ndarray:
        """[T] raw ids (published id - 1) of the tracklets in memory."""
        return self._ids.copy()

    def _new_ids(self, k: int) -> np.ndarray:
        """[k] raw ids for new tracks: least recently released first (``IdPool``); never one a
        tracklet in memory holds."""
        self.num_tracks += k
        return self.id_pool.acquire(k)

    def _drop(self, stale: np.ndarray) -> None:
        """Delete the tracklets where ``stale`` [T] bool is set (the one place tracks end)."""
        keep = ~stale
        self.id_pool.release(self._ids[stale])
        self._ids, self._labels, self._last = self._ids[keep], self._labels[keep], self._last[keep]
        if self._embeds is not None:
            self._embeds = self._embeds[keep]

    def _memo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids [M] i64, embeds [M,E] f32, labels [M] i64): tracklets, then backdrops (id -1)."""
        ids, embeds, labels = [self._ids], [self._embeds], [self._labels]
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
            b = memo_embeds / np.maximum(np.linalg.norm(memo_embeds, axis=1, keepdims=True), 1e-12)
            return _mm(a, b)
        feats = _mm(embeds, memo_embeds)  # [n, M] raw dot products
        if self.cfg.match_metric == "softmax":
            return _softmax(feats, 1)
        return (_softmax(feats, 1) + _softmax(feats, 0)) / np.float32(2)  # bi-softmax

    def update(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        embeds: np.ndarray,
        frame_id: Optional[int] = None,
    ) -> TrackResult:
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
        if (
            scores.shape[0] != n
            or labels.shape[0] != n
            or embeds.ndim != 2
            or embeds.shape[0] != n
        ):
            raise ValueError(
                f"tracker inputs disagree: boxes {boxes.shape}, scores "
                f"{scores.shape}, labels {labels.shape}, embeds {embeds.shape}; "
                "expected [n,4], [n], [n], [n,E]"
            )
        frame_id = self._next_frame if frame_id is None else int(frame_id)
        self._next_frame = frame_id + 1
        empty = np.zeros(0, np.int64)
        if n == 0:
            self._update_memo(empty, boxes, embeds, labels, frame_id)
            return TrackResult(empty, np.zeros(0, bool), empty, empty)

        # 1. sort by score, remove duplicates against *all* earlier boxes (kept or not)
        order = np.argsort(-scores, kind="stable")
        b, s = boxes[order], scores[order]
        obj_thr = np.float32(cfg.obj_score_thr)
        thr = np.where(
            s < obj_thr, np.float32(cfg.nms_backdrop_iou_thr), np.float32(cfg.nms_class_iou_thr)
        ).astype(np.float32)  # [n]
        valid = ~np.tril(box_iou(b, b) > thr[:, None], k=-1).any(1)
        src = order[valid]
        b, s, lab, emb = boxes[src], scores[src], labels[src], embeds[src]
        m = src.shape[0]
        ids = np.full(m, -1, np.int64)

        # 2. match against live tracklets + backdrops
        if m > 0 and self.num_live:
            memo_ids, memo_embeds, memo_labels = self._memo()
            sc = self._scores(emb, memo_embeds)  # [m, M]
            if cfg.with_cats:
                sc = sc * (lab[:, None] == memo_labels[None, :]).astype(np.float32)
            ids = _greedy_match(sc, memo_ids, s, cfg)

        # 3. new tracks for confident unmatched detections
        new = (ids == -1) & (s > np.float32(cfg.init_score_thr))
        ids[new] = self._new_ids(int(new.sum()))

        self._update_memo(ids, b, emb, lab, frame_id)
        per_row = np.full(n, -1, np.int64)
        per_row[src] = ids
        return TrackResult(
            ids=per_row,
            kept=valid[np.argsort(order, kind="stable")],
            out_src=src.astype(np.int64),
            out_ids=ids.copy(),
        )

    def _update_memo(
        self,
        ids: np.ndarray,
        boxes: np.ndarray,
        embeds: np.ndarray,
        labels: np.ndarray,
        frame_id: int,
    ) -> None:
        cfg = self.cfg
        mom = np.float32(cfg.memo_momentum)
        hit = np.nonzero(ids > -1)[0]  # detections with a track id (distinct ids)
        if hit.size:
            tids = ids[hit]
            if self._embeds is None:
                self._embeds = np.zeros((0, embeds.shape[1]), np.float32)
            pos = _positions(self._ids, tids)  # [k] memo position, -1 for a new track
            old = pos >= 0
            p, h = pos[old], hit[old]
            self._embeds[p] = (
                np.float32(1 - cfg.memo_momentum) * self._embeds[p] + mom * embeds[h]
            ).astype(np.float32)
            self._labels[p] = labels[h]
            self._last[p] = frame_id
            h = hit[~old]  # new tracks join at the end, in detection order
            self._ids = np.concatenate([self._ids, ids[h]])
            self._embeds = np.concatenate([self._embeds, embeds[h]]).astype(np.float32)
            self._labels = np.concatenate([self._labels, labels[h]])
            self._last = np.concatenate([self._last, np.full(h.size, frame_id, np.int64)])
        # backdrops: unassigned detections not overlapping an earlier detection
        back = np.nonzero(ids == -1)[0]
        if back.size:
            over = box_iou(boxes[back], boxes) > np.float32(cfg.nms_backdrop_iou_thr)
            earlier = np.arange(boxes.shape[0])[None, :] < back[:, None]
            back = back[~(over & earlier).any(1)]
        self.backdrops.insert(0, (embeds[back].copy(), labels[back].copy()))
        self._drop(frame_id - self._last >= cfg.memo_tracklet_frames)
        if len(self.backdrops) > cfg.memo_backdrop_frames:
            self.backdrops.pop()


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, E] x [M, E] -> [n, M] float32 ``a @ b.T`` through torch, whose thread setting the
    process controls (NumPy's BLAS pool spins on busy cores: 40 ms instead of 0.05 ms)."""
    import torch

    return (
        torch.from_numpy(np.ascontiguousarray(a, np.float32))
        @ torch.from_numpy(np.ascontiguousarray(b, np.float32)).T
    ).numpy()


def _positions(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """[k] index of each ``query`` value in ``keys`` (unsorted, distinct), -1 where absent."""
    if keys.size == 0:
        return np.full(query.shape, -1, np.int64)
    sorter = np.argsort(keys, kind="stable")
    at = np.searchsorted(keys, query, sorter=sorter).clip(max=keys.size - 1)
    pos = sorter[at]
    return np.where(keys[pos] == query, pos, -1)


def _greedy_match(
    sc: np.ndarray, memo_ids: np.ndarray, s: np.ndarray, cfg: TrackerConfig
) -> np.ndarray:
    """[m] raw ids of the official row-by-row matching, vectorised.

    Officially each detection i (descending score) takes the arg-max memo entry j of its row;
    a confident match (score > obj_score_thr) zeroes column j for every other detection. All
    rows are decided at once on the current columns; only from the first row whose arg-max
    column an earlier row took is the rest decided again, with that column zeroed.
    sc: [m, M] float32 match scores; memo_ids: [M] (-1: backdrop); s: [m] detection scores.
    """
    m = sc.shape[0]
    ids = np.full(m, -1, np.int64)
    match_thr, conf_thr = np.float32(cfg.match_score_thr), np.float32(cfg.nms_conf_thr)
    obj_thr = np.float32(cfg.obj_score_thr)
    taken = np.zeros(sc.shape[1], bool)
    i = 0
    while i < m:
        cur = sc[i:]
        if taken.any():
            cur = cur.copy()
            cur[:, taken] = 0
        j = cur.argmax(1)  # [m - i] first maximum
        conf = cur[np.arange(j.size), j]
        tid = memo_ids[j]
        match = (conf > match_thr) & (tid > -1)
        take = match & (s[i:] > obj_thr)
        # rows whose arg-max column an earlier row of this pass takes must be decided again
        cols, first = np.unique(j[take], return_index=True)
        first_taker = np.full(sc.shape[1], m, np.int64)
        first_taker[cols] = np.nonzero(take)[0][first]
        redo = np.nonzero(first_taker[j] < np.arange(j.size))[0]
        q = int(redo[0]) if redo.size else j.size  # rows i .. i + q - 1 are final
        out = ids[i : i + q]
        out[take[:q]] = tid[:q][take[:q]]
        out[match[:q] & ~take[:q] & (conf[:q] > conf_thr)] = -2
        taken[j[:q][take[:q]]] = True
        i += q
    return ids
