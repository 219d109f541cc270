"""Keep-ratio resize + bottom/right pad, and the exact way back (official rescale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vknet_core.preprocess import (
    MEAN_PAD,
    Letterbox,
    PreprocessConfig,
    fit_size,
    letterbox_from_meta,
    to_model_input,
)


def test_default_pads_camera_size_to_multiple_of_32():
    rgb = np.random.default_rng(0).integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    img, lb = to_model_input(rgb)
    assert img.shape == (1, 384, 1248, 3) and img.dtype == np.uint8
    assert lb == Letterbox((375, 1242), (375, 1242), (384, 1248))
    np.testing.assert_array_equal(img[0, :375, :1242], rgb)  # image top-left, untouched
    assert (img[0, 375:] == MEAN_PAD).all() and (img[0, :, 1242:] == MEAN_PAD).all()


@pytest.mark.parametrize(
    "hw,net,resized,upscale",
    [
        ((720, 1280), (384, 1248), (384, 683), False),  # height-bound
        ((200, 1600), (384, 1248), (156, 1248), False),  # width-bound
        ((96, 312), (384, 1248), (384, 1248), True),  # exact upscale
        ((96, 312), (384, 1248), (96, 312), False),  # fits: padded only, never enlarged
        ((375, 1242), (384, 1248), (375, 1242), False),  # KITTI frame in the KITTI network
    ],
)
def test_keep_ratio_fit(hw, net, resized, upscale):
    cfg = PreprocessConfig(net_hw=net, upscale=upscale)
    assert fit_size(hw, cfg) == (resized, net)
    rgb = np.full(hw + (3,), 200, np.uint8)
    img, lb = to_model_input(rgb, cfg)
    assert img.shape == (1, *net, 3) and lb.resized_hw == resized and lb.orig_hw == hw
    assert (img[0, : resized[0], : resized[1]] == 200).all()
    assert lb.scale == pytest.approx(resized[0] / hw[0])


def test_to_original_is_the_official_rescale():
    lb = Letterbox((37, 61), (45, 74), (48, 80))
    x = torch.randn(5, 12, 20)
    ref = F.interpolate(x[None], size=(48, 80), mode="bilinear", align_corners=False)
    ref = F.interpolate(ref[:, :, :45, :74], size=(37, 61), mode="bilinear", align_corners=False)[
        0
    ]
    torch.testing.assert_close(lb.to_original(x), ref, rtol=0, atol=0)
    assert lb.to_original(x[:, None]).shape == (5, 1, 37, 61)  # leading dims kept
    assert letterbox_from_meta([45, 74, 48, 80, 37, 61]) == lb


def test_round_trip_geometry():
    """A rectangle drawn in network coordinates comes back at the right camera place."""
    rgb = np.zeros((300, 500, 3), np.uint8)
    rgb[100:200, 150:350] = 255
    img, lb = to_model_input(rgb, PreprocessConfig(net_hw=(256, 512)))
    net_mask = torch.from_numpy(img[0, ..., 0] > 127).float()  # [256, 512]
    back = lb.to_original(net_mask[None])[0] > 0.5
    truth = torch.from_numpy(rgb[..., 0] > 127)
    assert (back ^ truth).float().mean() < 0.01
    assert not back[:, 360:].any() and not back[210:].any()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        to_model_input(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        to_model_input(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        to_model_input(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="multiples of 32"):
        to_model_input(np.zeros((10, 10, 3), np.uint8), PreprocessConfig(net_hw=(100, 96)))
