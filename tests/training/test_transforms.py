"""Clip-consistent transforms: functional core, random wrappers, one draw for every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vknet_training.transforms import (
    RandomCrop,
    RandomHFlip,
    RandomResize,
    crop_clip,
    hflip_clip,
    keep_ratio_scale,
    normalize,
    pad_clip,
    pad_tensor,
    padded_size,
    resize_clip,
)


def _clip(t: int = 2, h: int = 20, w: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(t)]
    pans = []
    for _ in range(t):
        pan = np.full((h, w), 0, np.int64)  # road
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 8)
        pan[y : y + 6, x : x + 8] = 13 * 1000 + 7  # one car
        pans.append(pan)
    return images, pans


def test_keep_ratio_scale_matches_mmdet_rescale():
    # KITTI 375x1242 into (384, 1248): min(1248/1242, 384/375)
    assert keep_ratio_scale((375, 1242), (384, 1248)) == pytest.approx(1248 / 1242)
    assert keep_ratio_scale((375, 1242), (384, 1248), 0.5) == pytest.approx(0.5 * 1248 / 1242)
    assert keep_ratio_scale((192, 384), (192, 384), 2.0) == pytest.approx(2.0)


def test_resize_clip_sizes_and_labels_stay_discrete():
    images, pans = _clip()
    out_i, out_p = resize_clip(images, pans, 1.7)
    assert out_i[0].shape == (34, 51, 3) and out_i[0].dtype == np.uint8
    assert out_p[1].shape == (34, 51) and out_p[1].dtype == np.int64
    for p_in, p_out in zip(pans, out_p):
        assert set(np.unique(p_out)) <= set(np.unique(p_in))  # nearest: no blended ids
    # car area scales with scale^2 (within rounding)
    assert (out_p[0] == 13007).sum() == pytest.approx(48 * 1.7**2, rel=0.25)
    same_i, same_p = resize_clip(images, pans, 1.0)
    assert all(np.array_equal(a, b) for a, b in zip(same_p, pans))


def test_hflip_crop_pad():
    images, pans = _clip()
    fi, fp = hflip_clip(images, pans)
    assert np.array_equal(fi[0], images[0][:, ::-1]) and np.array_equal(fp[1], pans[1][:, ::-1])
    ffi, ffp = hflip_clip(fi, fp)
    assert np.array_equal(ffi[1], images[1]) and np.array_equal(ffp[0], pans[0])

    ci, cp = crop_clip(images, pans, 3, 4, 10, 12)
    assert np.array_equal(ci[1], images[1][3:13, 4:16]) and cp[0].shape == (10, 12)
    with pytest.raises(ValueError, match="does not fit a 20x30 frame"):
        crop_clip(images, pans, 15, 0, 10, 10)

    assert padded_size((20, 30)) == (32, 32) and padded_size((64, 33), 32) == (64, 64)
    pi, pp = pad_clip(images, pans, void_value=255000)
    assert pi[0].shape == (32, 32, 3) and (pi[0][20:] == 0).all() and (pi[0][:, 30:] == 0).all()
    assert (pp[1][20:] == 255000).all() and np.array_equal(pp[1][:20, :30], pans[1])


def test_normalize_and_pad_tensor():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    x = normalize(img, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert x[0, 0, 0].item() == pytest.approx((255 - 123.675) / 58.395)
    assert x[2, 1, 2].item() == pytest.approx(-103.53 / 57.375)
    y = pad_tensor(x, (32, 32), 0.0)
    assert y.shape == (3, 32, 32) and torch.equal(y[:, :2, :3], x) and y[:, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        normalize(img.astype(np.float32), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="smaller size"):
        pad_tensor(x, (1, 1))


def test_clip_validation_errors():
    images, pans = _clip()
    with pytest.raises(ValueError, match="same non-zero number"):
        hflip_clip(images, pans[:1])
    with pytest.raises(ValueError, match="share one size"):
        hflip_clip([images[0], images[1][:10]], [pans[0], pans[1][:10]])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        resize_clip([images[0].astype(np.float32)], [pans[0]], 2.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        resize_clip(images, pans, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_wrappers_apply_one_draw_to_every_frame(seed):
    """Identical frames in -> identical frames out, whatever the draw."""
    images, pans = _clip(t=1, h=40, w=60, seed=seed)
    images, pans = images * 3, pans * 3
    rng = np.random.default_rng(seed)
    for t in (RandomResize((40, 60), (0.5, 2.0)), RandomHFlip(0.5), RandomCrop((24, 32))):
        images, pans = t(images, pans, rng)
        for k in (1, 2):
            assert np.array_equal(images[k], images[0]) and np.array_equal(pans[k], pans[0])
    assert images[0].shape[:2] == (min(24, images[0].shape[0]), min(32, images[0].shape[1]))


def test_random_wrappers_are_deterministic_for_a_seed():
    images, pans = _clip(h=40, w=60)

    def run(seed):
        rng = np.random.default_rng(seed)
        i, p = RandomResize((40, 60))(images, pans, rng)
        i, p = RandomHFlip()(i, p, rng)
        return RandomCrop((24, 32))(i, p, rng)

    a, b = run(5), run(5)
    assert all(np.array_equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    outs = [run(s)[1][0] for s in range(8)]
    assert any(o.shape != outs[0].shape or not np.array_equal(o, outs[0]) for o in outs[1:])


def test_random_crop_keeps_small_dimensions_whole():
    images, pans = _clip(h=20, w=30)
    ci, cp = RandomCrop((64, 16))(images, pans, np.random.default_rng(0))
    assert ci[0].shape == (20, 16, 3) and cp[1].shape == (20, 16)


def test_random_hflip_probability_extremes():
    images, pans = _clip()
    fi, _ = RandomHFlip(1.0)(images, pans, np.random.default_rng(0))
    assert np.array_equal(fi[0], images[0][:, ::-1])
    ni, _ = RandomHFlip(0.0)(images, pans, np.random.default_rng(0))
    assert np.array_equal(ni[0], images[0])
