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
    r = panoptic_merge(
        torch.from_numpy(ref[p + "cls_scores"]),
        torch.from_numpy(ref[p + "mask_logits"]),
        lb,
        100,
        2,
    )
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
    r = panoptic_merge(
        torch.from_numpy(ref[p + "cls_scores"]),
        torch.from_numpy(ref[p + "mask_logits"]),
        Letterbox.identity((128, 256)),
        100,
        2,
        cfg,
        upsample=4,
    )
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
        y0, x0 = (
            int(v)
            for v in torch.randint(0, h - 2, (1,), generator=g).tolist()
            + torch.randint(0, w - 2, (1,), generator=g).tolist()
        )
        dy, dx = (int(v) for v in torch.randint(2, 8, (2,), generator=g))
        mask_logits[n, y0 : y0 + dy, x0 : x0 + dx] += 9.0
    return cls_prob.clamp(max=1.0), mask_logits


@pytest.mark.parametrize(
    "seed,lb,chunk",
    [
        (0, Letterbox.identity((48, 80)), 16),
        (1, Letterbox((37, 61), (45, 74), (48, 80)), 1),  # resize + padding crop
        (2, Letterbox((90, 150), (45, 75), (48, 80)), 1000),  # upscaling back to the camera
        (3, Letterbox((45, 74), (45, 74), (48, 80)), 7),  # padding only
    ],
)
def test_vectorised_merge_equals_loop_reference(seed, lb, chunk):
    cls_prob, mask_logits = random_outputs(seed)
    cfg = MergeConfig(instance_score_thr=0.2, chunk=chunk)
    r = panoptic_merge(cls_prob, mask_logits, lb, 20, 2, cfg, upsample=2)
    seg, info = merge_loop(
        cls_prob,
        F.interpolate(mask_logits[None], scale_factor=2, mode="bilinear", align_corners=False)[0],
        lb,
        20,
        2,
        cfg,
    )
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
    np.testing.assert_array_equal(got, boxes_loop(segment_map.numpy(), ids.numpy(), keep.numpy()))
    assert tuple(got[2]) == EMPTY_BOX and tuple(got[4]) == EMPTY_BOX
    no_filter = segment_boxes(segment_map, ids[:1]).numpy()
    np.testing.assert_array_equal(
        no_filter, boxes_loop(segment_map.numpy(), [1], np.ones((30, 44), bool))
    )


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
    Q, T, K, h, w = 20, 2, 19, 12, 48  # wide enough for the cell-wise path (cells.MIN_OUT_W)
    N = Q + K - T
    cls = torch.rand(N, K, generator=g) ** 3
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    cy, cx = torch.rand(N, 1, 1, generator=g) * h, torch.rand(N, 1, 1, generator=g) * w
    rad = 1 + torch.rand(N, 1, 1, generator=g) * 6
    logits = 8 - 8 * ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / rad  # blobs with soft edges
    logits = logits + torch.randn(N, h, w, generator=g)
    for lb in (Letterbox((90, 378), (90, 378), (96, 384)), Letterbox.identity((96, 384)), None):
        a = panoptic_merge(cls, logits, lb, Q, T, MergeConfig(), upsample=4)
        assert a.owners is not None
        b = panoptic_merge(
            cls, logits, lb, Q, T, replace(MergeConfig(), windowed=False), upsample=4
        )
        assert torch.equal(a.segment_map, b.segment_map)
        for f in ("labels", "kernels", "areas", "ranks", "is_thing"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
        assert a.num_segments > 2


# ----------------------------------------------------------------------------- cell-wise path


def blob_logits(g, N, h, w, sharp=8.0):
    """[N, h, w] blobs with soft edges plus noise: many cells where the winner changes."""
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    cy, cx = torch.rand(N, 1, 1, generator=g) * h, torch.rand(N, 1, 1, generator=g) * w
    rad = 1 + torch.rand(N, 1, 1, generator=g) * 6
    return (
        sharp
        - sharp * ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / rad
        + torch.randn(N, h, w, generator=g)
    )


def assert_same_merge(a, b):
    assert torch.equal(a.segment_map, b.segment_map)
    for f in ("labels", "kernels", "areas", "ranks", "is_thing", "scores"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


@pytest.mark.parametrize("seed", range(12))
def test_cellwise_merge_equals_the_whole_map_path_on_random_geometries(seed):
    """Upsample 1/2/4, pad factor 1/2/4, crops that cut cells, equal scores, duplicated and
    saturated masks (exact ties), thresholds met exactly: the same map and segments."""
    from dataclasses import replace

    g = torch.Generator().manual_seed(100 + seed)
    up, k = (1, 2, 4)[seed % 3], (1, 2, 4)[(seed // 3) % 3]
    Q, T, K = 12, 2, 9
    N, h, w = Q + K - T, 5 + seed % 4, 96 + (3 * seed) % 7  # wide: see cells.MIN_OUT_W
    cls = torch.rand(N, K, generator=g) ** 2
    cls[Q:, T:] += torch.eye(K - T) * 0.4
    logits = blob_logits(g, N, h, w)
    if seed % 2:  # exact ties: a duplicated row with the same score, saturated plateaus
        logits[3] = logits[5]
        cls[3, 0] = cls[5, 0] = cls[3:6, :T].max() + 0.01
        logits[Q + 1, : h // 2] = 40.0
        logits[Q + 2, : h // 2] = 40.0
    pad = (h * up * k, w * up * k)
    cam = (pad[0] - (seed % 4) * 3, pad[1] - (seed % 5) * 2)
    cfg = MergeConfig(instance_score_thr=0.2, overlap_thr=(0.6, 0.3, 0.9)[seed % 3])
    for lb in (Letterbox(cam, cam, pad), Letterbox.identity(pad), None):
        a = panoptic_merge(cls, logits, lb, Q, T, cfg, upsample=up)
        b = panoptic_merge(cls, logits, lb, Q, T, replace(cfg, windowed=False), upsample=up)
        assert a.owners is not None  # the cell-wise path ran
        assert_same_merge(a, b)
        assert a.num_segments >= 1
        lut = torch.arange(a.num_segments + 1, dtype=torch.int32) * 3
        assert torch.equal(a.paint(lut), lut[b.segment_map.long()])


@pytest.mark.parametrize(
    "factors,sigmoid_after",
    [((4, 2), 0), ((2,), None), ((8,), None), ((1, 2), 0), ((2, 4), 0), ((4,), 0)],
)
def test_exact_cells_equal_the_whole_map_resample(factors, sigmoid_after):
    """Cell values from windows and strips, borders and corners included, bit for bit."""
    from vknet_core.postprocess.cells import exact_cells, make_grid

    g = torch.Generator().manual_seed(len(factors) * 10 + factors[0])
    R, C, h, w = 2, 2, 5, 100
    maps = torch.randn(R, C, h, w, generator=g) * 6
    s = int(np.prod(factors))
    grid = make_grid((h, w), factors, (h * s, w * s), (h * s - 1, w * s - 3))
    full = maps
    for i, f in enumerate(factors):
        if f != 1:
            full = F.interpolate(full, scale_factor=f, mode="bilinear", align_corners=False)
        if i == sigmoid_after:
            full = full.sigmoid()
    r, cy, cx = (
        t.flatten()
        for t in torch.meshgrid(torch.arange(R), torch.arange(h), torch.arange(w), indexing="ij")
    )
    assert grid is not None
    keep = torch.rand(r.numel(), generator=g) < 0.7  # gaps: runs of several lengths
    r, cy, cx = r[keep], cy[keep], cx[keep]
    got = exact_cells(maps, r, cy, cx, grid, sigmoid_after)  # [B, C, s, s]
    want = full.view(R, C, h, s, w, s).permute(0, 2, 4, 1, 3, 5)[r, cy, cx]
    assert torch.equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_cellwise_semantic_filter_equals_the_whole_map(seed):
    """Thing/stuff decided per cell (saturated ties included), also restricted to ``where``."""
    g = torch.Generator().manual_seed(200 + seed)
    K, T, h, w, s = 7, 2, 4 + seed, 97 + seed, (2, 4, 8)[seed % 3]
    sem = torch.randn(K, h, w, generator=g) * 3
    sem[:, : h // 2, : w // 3] = 30.0  # saturated: thing and stuff both sigmoid to 1.0
    sem[T + 1, h // 2 :, w // 2 :] += 4.0
    cam = (h * s - seed % 3, w * s - 2 * (seed % 2))
    lb = Letterbox(cam, cam, (h * s, w * s))
    a = semantic_thing_mask(sem, cam, T, lb)
    b = semantic_thing_mask(sem, cam, T, lb, cellwise=False)
    assert torch.equal(a, b) and a.any() and not a.all()
    where = torch.rand(cam, generator=g) < 0.01
    c = semantic_thing_mask(sem, cam, T, lb, where=where)
    assert torch.equal(c[where], b[where])


def test_pipeline_with_the_shipped_tiny_model_equals_the_whole_map_path():
    """Real outputs (the shipped tiny model on synthetic street frames, letterboxed): the same
    maps, segments and track ids with the cell-wise merge and semantic filter as without."""
    from dataclasses import replace
    from pathlib import Path

    from vknet_core.checkpoint import load_checkpoint
    from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
    from vknet_core.preprocess import PreprocessConfig
    from vknet_core.runtime import TorchBackend
    from vknet_training.make_synthetic import make_sequence

    path = Path(__file__).resolve().parents[2] / "vknet_ros" / "models" / "tiny_synthetic.pt"
    model = load_checkpoint(path)
    frames = [rgb for rgb, _ in make_sequence(np.random.default_rng(3), 3, 125, 380)]
    pre = PreprocessConfig(net_hw=(128, 384))
    from vknet_core.postprocess.panoptic import _cell_grid

    assert _cell_grid((16, 48), Letterbox((125, 380), (125, 380), (128, 384)), 4) is not None
    fast = VideoPanopticPipeline(TorchBackend(model), model.cfg, PipelineConfig(preprocess=pre))
    slow = VideoPanopticPipeline(
        TorchBackend(model),
        model.cfg,
        PipelineConfig(preprocess=pre, merge=replace(MergeConfig(), windowed=False)),
    )
    import vknet_core.pipeline as pl

    def whole(result, sem, T, lb, out_hw):  # the whole-map semantic filter
        return semantic_thing_mask(sem, out_hw, T, lb, cellwise=False)

    for rgb in frames:
        a = fast.step(rgb)
        orig, pl.thing_segment_filter = pl.thing_segment_filter, whole
        try:
            b = slow.step(rgb)
        finally:
            pl.thing_segment_filter = orig
        for f in ("segment_map", "semantic", "instance_ids", "panoptic"):
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype and np.array_equal(x, y), f
        assert a.segments == b.segments
    assert any(s.is_thing for s in a.segments)
