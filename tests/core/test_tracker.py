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
        boxes = segment_boxes(torch.from_numpy(segment_map), torch.arange(1, len(masks) + 1),
                              torch.from_numpy(ref[p + "semantic_thing"].astype(bool))).numpy()
        np.testing.assert_array_equal(boxes, ref[p + "track_in_bboxes"][:, :4])
        r = tracker.update(boxes, ref[p + "scores"], ref[p + "labels"], ref[p + "feats"],
                           int(fid))
        np.testing.assert_array_equal(r.out_src, ref[p + "track_out_src"], err_msg=p)
        np.testing.assert_array_equal(r.out_ids, ref[p + "track_out_ids"], err_msg=p)
        official = r.track_ids(official_paint_order=True)
        np.testing.assert_array_equal(official[: len(ref[p + "track_final_ids"])],
                                      ref[p + "track_final_ids"])
        np.testing.assert_array_equal(paint(masks, official, segment_map.shape),
                                      ref[p + "track_map"], err_msg=p)
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
        r = tracker.update(bb[:, :4], bb[:, 4], ref[p + "track_in_labels"],
                           ref[p + "track_in_feats"], t)
        np.testing.assert_array_equal(r.out_src, ref[p + "track_out_src"])
        np.testing.assert_array_equal(r.out_ids, ref[p + "track_out_ids"])
        pan, segs = ref[p + "panoptic_seg"], ref[p + "segments"]
        thing_masks = [pan == sid for sid in segs[segs[:, 1] == 1, 0]]
        np.testing.assert_array_equal(
            paint(thing_masks, r.track_ids(official_paint_order=True), pan.shape),
            ref[p + "track_map"])


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
    return tracker.update(np.array(boxes), np.array(scores), np.array(labels), np.stack(embs),
                          frame_id)


def test_new_objects_get_new_ids_and_ids_are_deterministic():
    a, b = QuasiDenseTracker(), QuasiDenseTracker()
    for tr in (a, b):
        assert run(tr, [det("A", 0)]).track_ids().tolist() == [1]
        assert run(tr, [det("A", 2), det("B", 50)]).track_ids().tolist() == [1, 2]
        assert run(tr, [det("C", 80), det("A", 4), det("B", 52)]).track_ids().tolist() == \
            [3, 1, 2]


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
