"""Panoptic merge + tracker boxes: official parity (exact) and a slow per-candidate reference."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.shared_data import require_shared
from vknet_core.config import kitti_step_r50
from vknet_core.postprocess.boxes import EMPTY_BOX, segment_boxes, semantic_thing_mask
from vknet_core.postprocess.panoptic import MergeConfig, panoptic_merge, semantic_map
from vknet_core.preprocess import Letterbox, letterbox_from_meta

M2T = kitti_step_r50().labels.model_to_train_id


def load_parity(stem: str) -> dict:
    path = require_shared(f"parity/{stem}.npz")
    spec = importlib.util.spec_from_file_location("parity_io", path.parent / "parity_io.py")
    pio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pio)
    return pio.load(stem, str(path.parent))


# ----------------------------------------------------------------------------- reference


def merge_loop(cls_prob, mask_logits, lb, Q, T, cfg=MergeConfig()):
    """The official algorithm transcribed candidate by candidate (slow, for comparison)."""
    thing_scores, idx = cls_prob[:Q, :T].flatten().topk(min(cfg.max_per_img, Q * T))
    stuff = cls_prob[Q:, T:].diagonal()
    s_scores, s_idx = torch.sort(stuff, descending=True, stable=True)
    kernels = (idx // T).tolist() + (s_idx + Q).tolist()
    labels = (idx % T).tolist() + (s_idx + T).tolist()
    scores = torch.cat([thing_scores, s_scores])
    probs = mask_logits[kernels].sigmoid()[None]
    probs = F.interpolate(probs, size=lb.pad_hw, mode="bilinear", align_corners=False)
    probs = probs[:, :, : lb.resized_hw[0], : lb.resized_hw[1]]
    probs = F.interpolate(probs, size=lb.orig_hw, mode="bilinear", align_corners=False)[0]
    owner = (scores.view(-1, 1, 1) * probs).argmax(0)
    seg = torch.zeros(lb.orig_hw, dtype=torch.int32)
    info = []
    for k in torch.argsort(-scores, stable=True).tolist():
        thing = labels[k] < T
        if thing and scores[k] < cfg.instance_score_thr:
            continue
        a = int((owner == k).sum())
        o = int((probs[k] >= 0.5).sum())
        if a > 0 and o > 0:
            if a / o < cfg.overlap_thr:
                continue
            seg[owner == k] = len(info) + 1
            info.append((labels[k], kernels[k], k, a))
    return seg, info


def boxes_loop(segment_map, ids, keep):
    out = []
    for i in ids:
        ys, xs = np.nonzero((segment_map == i) & keep)
        out.append(EMPTY_BOX if ys.size == 0 else (xs.min(), ys.min(), xs.max(), ys.max()))
    return np.asarray(out, np.float32)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("case", [0, 1, 2])
def test_merge_cases_match_official(case):
    ref = load_parity("postprocess_cases")
    p = f"merge{case}__"
    lb = letterbox_from_meta(ref[p + "img_meta"])
    r = panoptic_merge(torch.from_numpy(ref[p + "cls_scores"]),
                       torch.from_numpy(ref[p + "mask_logits"]), lb, 100, 2)
    np.testing.assert_array_equal(r.segment_map.numpy(), ref[p + "panoptic_seg"])
    np.testing.assert_array_equal(r.official_segments(2, 100), ref[p + "segments"])
    things = r.thing_segments
    np.testing.assert_array_equal(r.kernels[things].numpy(), ref[p + "thing_query_order"])
    is_thing = ref[p + "segments"][:, 1] == 1
    np.testing.assert_array_equal(r.scores[things].numpy(), ref[p + "segment_scores"][is_thing])


@pytest.mark.parametrize("t", range(6))
def test_clip_merge_semantic_and_boxes_match_official(t):
    ref = load_parity("r50_128x256")
    p = f"clip__f{t}__"
    cfg = MergeConfig(void_as_road=True)
    r = panoptic_merge(torch.from_numpy(ref[p + "cls_scores"]),
                       torch.from_numpy(ref[p + "mask_logits"]), Letterbox.identity((128, 256)),
                       100, 2, cfg, upsample=4)
    np.testing.assert_array_equal(r.segment_map.numpy(), ref[p + "panoptic_seg"])
    np.testing.assert_array_equal(r.official_segments(2, 100), ref[p + "segments"])
    sem = semantic_map(r, M2T, void_as_road=cfg.void_as_road)
    np.testing.assert_array_equal(sem.numpy(), ref[p + "semantic_map"])
    keep = semantic_thing_mask(torch.from_numpy(ref[p + "seg_preds"]), (128, 256), 2)
    things = r.thing_segments
    boxes = segment_boxes(r.segment_map, things + 1, keep)
    np.testing.assert_array_equal(boxes.numpy(), ref[p + "track_in_bboxes"][:, :4])
    np.testing.assert_array_equal(r.scores[things].numpy(), ref[p + "track_in_bboxes"][:, 4])


# ----------------------------------------------------------------------------- invariants


def random_outputs(seed, Q=20, K=19, T=2, h=12, w=20):
    """Each kernel: a random rectangle of positive logits plus noise; scores in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    N = Q + K - T
    cls_prob = torch.rand(N, K, generator=g) ** 2
    cls_prob[Q:, T:] += torch.eye(K - T) * 0.3  # some confident stuff
    mask_logits = torch.randn(N, h, w, generator=g) - 4.0
    for n in range(N):
        y0, x0 = (int(v) for v in torch.randint(0, h - 2, (1,), generator=g).tolist()
                  + torch.randint(0, w - 2, (1,), generator=g).tolist())
        dy, dx = (int(v) for v in torch.randint(2, 8, (2,), generator=g))
        mask_logits[n, y0:y0 + dy, x0:x0 + dx] += 9.0
    return cls_prob.clamp(max=1.0), mask_logits


@pytest.mark.parametrize("seed,lb,chunk", [
    (0, Letterbox.identity((48, 80)), 16),
    (1, Letterbox((37, 61), (45, 74), (48, 80)), 1),  # resize + padding crop
    (2, Letterbox((90, 150), (45, 75), (48, 80)), 1000),  # upscaling back to the camera
    (3, Letterbox((45, 74), (45, 74), (48, 80)), 7),  # padding only
])
def test_vectorised_merge_equals_loop_reference(seed, lb, chunk):
    cls_prob, mask_logits = random_outputs(seed)
    cfg = MergeConfig(instance_score_thr=0.2, chunk=chunk)
    r = panoptic_merge(cls_prob, mask_logits, lb, 20, 2, cfg, upsample=2)
    seg, info = merge_loop(cls_prob, F.interpolate(mask_logits[None], scale_factor=2,
                                                   mode="bilinear", align_corners=False)[0],
                           lb, 20, 2, cfg)
    assert r.segment_map.shape == lb.orig_hw
    torch.testing.assert_close(r.segment_map, seg, rtol=0, atol=0)
    assert r.num_segments == len(info) > 0
    assert r.labels.tolist() == [i[0] for i in info]
    assert r.kernels.tolist() == [i[1] for i in info]
    assert r.ranks.tolist() == [i[2] for i in info]
    assert r.areas.tolist() == [i[3] for i in info]
    assert int(r.areas.sum()) == int((r.segment_map > 0).sum())


def test_semantic_map_void_and_train_ids():
    cls_prob, mask_logits = random_outputs(3)
    cls_prob[:20, :2] = 0.9  # things everywhere, strong overlap -> some get dropped (void)
    r = panoptic_merge(cls_prob, mask_logits, Letterbox.identity((24, 40)), 20, 2)
    sem = semantic_map(r, M2T)
    void = r.segment_map == 0
    assert void.any(), "expected dropped candidates leaving void pixels"
    assert (sem[void] == 255).all()
    assert (semantic_map(r, M2T, void_as_road=True)[void] == 0).all()
    for i in range(r.num_segments):
        vals = sem[r.segment_map == i + 1].unique().tolist()
        assert vals == [M2T[int(r.labels[i])]]
        assert bool(r.is_thing[i]) == (M2T[int(r.labels[i])] in (11, 13))


def test_all_stuff_frame_has_no_thing_segments():
    cls_prob, mask_logits = random_outputs(4)
    cls_prob[:20, :2] = 0.1  # below instance_score_thr
    r = panoptic_merge(cls_prob, mask_logits, Letterbox.identity((24, 40)), 20, 2)
    assert r.thing_segments.numel() == 0 and r.num_segments > 0
    assert not r.is_thing.any()


def test_boxes_equal_loop_reference_and_placeholder():
    g = torch.Generator().manual_seed(5)
    segment_map = torch.randint(0, 5, (30, 44), generator=g, dtype=torch.int32)
    keep = torch.rand(30, 44, generator=g) > 0.5
    keep[segment_map == 3] = False  # segment 3 fully filtered -> placeholder box
    ids = torch.tensor([1, 2, 3, 4, 7])  # 7 does not exist -> placeholder
    got = segment_boxes(segment_map, ids, keep).numpy()
    np.testing.assert_array_equal(got, boxes_loop(segment_map.numpy(), ids.numpy(),
                                                  keep.numpy()))
    assert tuple(got[2]) == EMPTY_BOX and tuple(got[4]) == EMPTY_BOX
    no_filter = segment_boxes(segment_map, ids[:1]).numpy()
    np.testing.assert_array_equal(no_filter, boxes_loop(segment_map.numpy(), [1],
                                                        np.ones((30, 44), bool)))


def test_bad_shapes_raise_clear_errors():
    cls_prob, mask_logits = random_outputs(6)
    with pytest.raises(ValueError, match="mask_logits must be"):
        panoptic_merge(cls_prob, mask_logits[:5], None, 20, 2)
    with pytest.raises(ValueError, match="thing kernels"):
        panoptic_merge(cls_prob, mask_logits, None, 100, 2)


@pytest.mark.parametrize("seed", range(6))
def test_windowed_rescale_equals_the_whole_map_path(seed):
    """The windowed owner map (rows rescaled only where they may win or be visible) gives the
    same segments, areas and map as rescaling every row over the whole frame."""
    from dataclasses import replace

    from vknet_core.preprocess import Letterbox

    g = torch.Generator().manual_seed(seed)
    Q, T, K, h, w = 20, 2, 19, 12, 32
    N = Q + K - T
    cls = torch.rand(N, K, generator=g) ** 3
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    cy, cx = torch.rand(N, 1, 1, generator=g) * h, torch.rand(N, 1, 1, generator=g) * w
    rad = 1 + torch.rand(N, 1, 1, generator=g) * 6
    logits = 8 - 8 * ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / rad  # blobs with soft edges
    logits = logits + torch.randn(N, h, w, generator=g)
    for lb in (Letterbox((90, 250), (90, 250), (96, 256)), Letterbox.identity((96, 256)), None):
        a = panoptic_merge(cls, logits, lb, Q, T, MergeConfig(), upsample=4)
        b = panoptic_merge(cls, logits, lb, Q, T, replace(MergeConfig(), windowed=False),
                           upsample=4)
        assert torch.equal(a.segment_map, b.segment_map)
        for f in ("labels", "kernels", "areas", "ranks", "is_thing"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
        assert a.num_segments > 2
