"""QDTrack bi-softmax tracker: official parity (exact) and the behaviours users rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.core.test_panoptic_merge import load_parity
from vknet_core.postprocess.boxes import segment_boxes
from vknet_core.tracking.tracker import QuasiDenseTracker, TrackerConfig, box_iou


def paint(masks_or_ids, track_ids, shape):
    out = np.zeros(shape, np.int64)
    for i, m in enumerate(masks_or_ids):
        out[m] = track_ids[i]
    return out


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("seq", [0, 1])
def test_tracker_sequences_match_official(seq):
    ref = load_parity("postprocess_cases")
    frame_ids = ref[f"track{seq}__frame_ids"]
    tracker = QuasiDenseTracker(TrackerConfig())
    for t, fid in enumerate(frame_ids):
        p = f"track{seq}__f{t}__"
        masks = ref[p + "masks"].astype(bool)
        segment_map = np.zeros(masks.shape[1:], np.int32)
        for i, m in enumerate(masks):
            segment_map[m] = i + 1
        boxes = segment_boxes(
            torch.from_numpy(segment_map),
            torch.arange(1, len(masks) + 1),
            torch.from_numpy(ref[p + "semantic_thing"].astype(bool)),
        ).numpy()
        np.testing.assert_array_equal(boxes, ref[p + "track_in_bboxes"][:, :4])
        r = tracker.update(boxes, ref[p + "scores"], ref[p + "labels"], ref[p + "feats"], int(fid))
        np.testing.assert_array_equal(r.out_src, ref[p + "track_out_src"], err_msg=p)
        np.testing.assert_array_equal(r.out_ids, ref[p + "track_out_ids"], err_msg=p)
        official = r.track_ids(official_paint_order=True)
        np.testing.assert_array_equal(
            official[: len(ref[p + "track_final_ids"])], ref[p + "track_final_ids"]
        )
        np.testing.assert_array_equal(
            paint(masks, official, segment_map.shape), ref[p + "track_map"], err_msg=p
        )
        # default: the ids carried by detection index land on their own masks
        aligned = r.track_ids()
        for row, raw in zip(r.out_src, r.out_ids):
            assert aligned[row] == (raw + 1 if raw >= 0 else 0)
        assert (aligned[~r.kept] == 0).all()


def test_clip_tracker_matches_official():
    ref = load_parity("r50_128x256")
    tracker = QuasiDenseTracker()
    for t in range(6):
        p = f"clip__f{t}__"
        bb = ref[p + "track_in_bboxes"]
        r = tracker.update(
            bb[:, :4], bb[:, 4], ref[p + "track_in_labels"], ref[p + "track_in_feats"], t
        )
        np.testing.assert_array_equal(r.out_src, ref[p + "track_out_src"])
        np.testing.assert_array_equal(r.out_ids, ref[p + "track_out_ids"])
        pan, segs = ref[p + "panoptic_seg"], ref[p + "segments"]
        thing_masks = [pan == sid for sid in segs[segs[:, 1] == 1, 0]]
        np.testing.assert_array_equal(
            paint(thing_masks, r.track_ids(official_paint_order=True), pan.shape),
            ref[p + "track_map"],
        )


# ----------------------------------------------------------------------------- behaviour

E = 64
RNG = np.random.default_rng(0)
EMB = {k: v for k, v in zip("ABCDEF", 4.0 * np.linalg.qr(RNG.normal(size=(E, 6)))[0].T)}


def det(name, x, score=0.9, label=0, noise=0.05, w=10.0, h=20.0):
    emb = EMB[name] + RNG.normal(scale=noise, size=E)
    return [x, 10.0, x + w, 10.0 + h], score, label, emb


def run(tracker, dets, frame_id=None):
    if not dets:
        return tracker.update(np.zeros((0, 4)), [], [], np.zeros((0, E)), frame_id)
    boxes, scores, labels, embs = zip(*dets)
    return tracker.update(
        np.array(boxes), np.array(scores), np.array(labels), np.stack(embs), frame_id
    )


def test_new_objects_get_new_ids_and_ids_are_deterministic():
    a, b = QuasiDenseTracker(), QuasiDenseTracker()
    for tr in (a, b):
        assert run(tr, [det("A", 0)]).track_ids().tolist() == [1]
        assert run(tr, [det("A", 2), det("B", 50)]).track_ids().tolist() == [1, 2]
        assert run(tr, [det("C", 80), det("A", 4), det("B", 52)]).track_ids().tolist() == [3, 1, 2]


def test_crossing_objects_of_the_same_class_keep_ids():
    tr = QuasiDenseTracker()
    ids_a, ids_b = [], []
    for t in range(12):  # A moves right, B left; they cross around t = 5..6
        xa, xb = 5.0 + 8 * t, 93.0 - 8 * t
        scores = (0.9, 0.8) if t % 2 else (0.8, 0.9)  # order of rows changes too
        r = run(tr, [det("A", xa, scores[0]), det("B", xb, scores[1])])
        ids_a.append(int(r.track_ids()[0]))
        ids_b.append(int(r.track_ids()[1]))
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]


@pytest.mark.parametrize("hidden,same_id", [(1, True), (4, True), (5, False), (6, False)])
def test_hidden_object_reidentified_up_to_4_frames(hidden, same_id):
    # (with a single memory entry the bi-softmax row term is 1 for any detection, so the
    # scene keeps two other objects, as real scenes do)
    tr = QuasiDenseTracker()
    first = run(tr, [det("A", 10), det("B", 60), det("C", 90)]).track_ids()
    for _ in range(hidden):
        run(tr, [det("B", 60), det("C", 90)])
    back = run(tr, [det("A", 12), det("B", 60), det("C", 90)]).track_ids()
    assert back[1:].tolist() == first[1:].tolist()
    assert (back[0] == first[0]) == same_id
    if not same_id:
        assert back[0] == 4  # a new id, never reused


@pytest.mark.parametrize("hidden,same_id", [(4, True), (5, False)])
def test_hidden_in_empty_frames(hidden, same_id):
    tr = QuasiDenseTracker()
    first = run(tr, [det("A", 10)]).track_ids()
    for _ in range(hidden):
        run(tr, [])  # frames without any detection still age the memory
    assert (run(tr, [det("A", 10)]).track_ids()[0] == first[0]) == same_id


def test_duplicate_suppressed_without_shifting_other_ids():
    tr = QuasiDenseTracker()
    run(tr, [det("A", 10), det("B", 60)])
    # row 1 is a near-copy of A's box (IoU > 0.7) with a lower score: removed before matching
    dets = [det("A", 11, 0.9), det("C", 11.5, 0.8), det("B", 61, 0.7)]
    r = run(tr, dets)
    assert r.kept.tolist() == [True, False, True]
    assert r.track_ids().tolist() == [1, 0, 2]  # B keeps its id on its own mask
    assert r.track_ids(official_paint_order=True).tolist() == [1, 2, 0]  # the official shift


def test_low_score_match_is_suppressed_and_class_gating():
    tr = QuasiDenseTracker()
    run(tr, [det("A", 10)])
    r = run(tr, [det("A", 10, score=0.2)])
    assert r.ids.tolist() == [-2] and r.track_ids().tolist() == [0]
    r = run(tr, [det("A", 10, label=1)])  # same embedding, other class: a new track
    assert r.track_ids().tolist() == [2]


def test_reset_restarts_ids_and_memory_is_bounded():
    tr = QuasiDenseTracker()
    for t in range(30):  # a new object every frame, each seen once
        run(tr, [det("ABCDEF"[t % 6], 5.0 * (t % 10), noise=3.0)])
        assert tr.num_live <= 5
        assert sum(len(b[1]) for b in tr.backdrops) <= 1
    tr.reset()
    assert tr.num_live == 0 and run(tr, [det("A", 0)]).track_ids().tolist() == [1]


def test_box_iou_matches_definition():
    a = np.array([[0, 0, 10, 10], [-1, -1, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [20, 20, 20, 20]], np.float32)
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(25 / 175)
    assert iou[0, 1] == 0 and iou[1, 1] == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="tracker inputs disagree"):
        QuasiDenseTracker().update(np.zeros((2, 4)), [0.5], [0, 0], np.zeros((2, 8)))
    with pytest.raises(ValueError, match="match_metric"):
        TrackerConfig(match_metric="iou")


# ----------------------------------------------------------------------------- loop reference


class LoopTracker:
    """The official per-detection loops (dict memory, one detection at a time), for comparison
    with the vectorised ``QuasiDenseTracker``; same config, same score function."""

    def __init__(self, cfg=TrackerConfig()):
        self.cfg, self.num_tracks, self.tracklets, self.backdrops = cfg, 0, {}, []
        self._scores = QuasiDenseTracker(cfg)._scores

    def update(self, boxes, scores, labels, embeds, frame_id):
        cfg, n = self.cfg, len(scores)
        order = np.argsort(-scores, kind="stable")
        b, s = boxes[order], scores[order]
        ious, valid, obj = box_iou(b, b), np.ones(n, bool), np.float32(cfg.obj_score_thr)
        for i in range(1, n):
            thr = cfg.nms_backdrop_iou_thr if s[i] < obj else cfg.nms_class_iou_thr
            valid[i] = not (ious[i, :i] > np.float32(thr)).any()
        src = order[valid]
        b, s, lab, emb = boxes[src], scores[src], labels[src], embeds[src]
        ids = np.full(len(src), -1, np.int64)
        if len(src) and self.tracklets:
            memo_ids = np.array(
                list(self.tracklets) + [-1] * sum(len(x[1]) for x in self.backdrops)
            )
            memo_emb = np.concatenate(
                [np.stack([t[0] for t in self.tracklets.values()])]
                + [x[0] for x in self.backdrops]
            )
            memo_lab = np.concatenate(
                [[t[1] for t in self.tracklets.values()]] + [x[1] for x in self.backdrops]
            )
            sc = self._scores(emb, memo_emb) * (lab[:, None] == memo_lab[None, :])
            for i in range(len(src)):
                j = int(np.argmax(sc[i]))
                conf, tid = sc[i, j], int(memo_ids[j])
                if conf > np.float32(cfg.match_score_thr) and tid > -1:
                    if s[i] > obj:
                        ids[i] = tid
                        sc[:i, j] = 0
                        sc[i + 1 :, j] = 0
                    elif conf > np.float32(cfg.nms_conf_thr):
                        ids[i] = -2
        new = (ids == -1) & (s > np.float32(cfg.init_score_thr))
        ids[new] = np.arange(self.num_tracks, self.num_tracks + int(new.sum()))
        self.num_tracks += int(new.sum())
        mom = np.float32(cfg.memo_momentum)
        for i in np.nonzero(ids > -1)[0]:
            old = self.tracklets.get(int(ids[i]))
            e = (
                emb[i]
                if old is None
                else (np.float32(1 - cfg.memo_momentum) * old[0] + mom * emb[i]).astype(np.float32)
            )
            self.tracklets[int(ids[i])] = [e, int(lab[i]), frame_id]
        back = np.nonzero(ids == -1)[0]
        ious = box_iou(b[back], b)
        back = back[
            [
                not (ious[r, :i] > np.float32(cfg.nms_backdrop_iou_thr)).any()
                for r, i in enumerate(back)
            ]
        ]
        self.backdrops.insert(0, (emb[back], lab[back]))
        for k in [
            k for k, v in self.tracklets.items() if frame_id - v[2] >= cfg.memo_tracklet_frames
        ]:
            del self.tracklets[k]
        del self.backdrops[cfg.memo_backdrop_frames :]
        out = np.full(n, -1, np.int64)
        out[src] = ids
        return out


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_update_equals_the_per_detection_loops(seed):
    """Crowded random frames (duplicates, conflicts for one track, low scores, two classes,
    objects leaving and returning): the same ids, row for row, and the same memory."""
    rng = np.random.default_rng(seed)
    cfg = TrackerConfig(match_metric=("bisoftmax", "softmax", "cosine")[seed % 3])
    vec, ref = QuasiDenseTracker(cfg), LoopTracker(cfg)
    objects = rng.normal(size=(40, 16)).astype(np.float32)
    for frame in range(60):
        n = int(rng.integers(0, 30))
        who = rng.integers(0, 40 if frame % 20 < 15 else 10, n)  # some objects vanish, return
        xy = rng.uniform(0, 200, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)
        scores = rng.uniform(0.1, 1.0, n).astype(np.float32)
        labels = (who % 2).astype(np.int64)
        embeds = objects[who] + rng.normal(scale=0.3, size=(n, 16)).astype(np.float32)
        got = vec.update(boxes, scores, labels, embeds, frame)
        np.testing.assert_array_equal(got.ids, ref.update(boxes, scores, labels, embeds, frame))
        assert vec._ids.tolist() == list(ref.tracklets)
        np.testing.assert_array_equal(
            vec._embeds,
            np.stack([t[0] for t in ref.tracklets.values()]) if ref.tracklets else vec._embeds,
        )
        assert vec.num_tracks == ref.num_tracks
