"""Bounded network size: large camera frames run at the preset's native size, outputs stay at
camera resolution."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.test_pipeline import CFG, ScriptedBackend
from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.preprocess import PreprocessConfig, fit_size, native_hw


@pytest.mark.parametrize(
    "hw,resized,padded",
    [
        ((720, 1280), (384, 683), (384, 704)),
        ((3000, 4000), (384, 512), (384, 512)),
        ((1280, 720), (683, 384), (704, 384)),  # portrait: the same keep-ratio rule as mmdet
        ((375, 1242), (375, 1242), (384, 1248)),  # KITTI-STEP itself: not resized
        ((120, 180), (120, 180), (128, 192)),  # small frames are never enlarged
    ],
)
def test_fit_size_bounds_by_the_native_size(hw, resized, padded):
    cfg = PreprocessConfig(max_hw=native_hw("kitti_step_r50"))
    assert fit_size(hw, cfg) == (resized, padded)


def test_native_sizes():
    assert native_hw("kitti_step_swinb") == (384, 1248)
    assert native_hw("cityscapes_vps_r50") == (1024, 2048)
    assert native_hw("tiny") == (384, 1248)


class Recording(ScriptedBackend):
    def step(self, feeds):
        self.shape = feeds["image"].shape
        return super().step(feeds)


@pytest.mark.parametrize("at_camera", [False, True])
def test_large_frame_runs_bounded_and_outputs_at_camera_size(at_camera):
    be = Recording()
    pipe = VideoPanopticPipeline(be, CFG, PipelineConfig(merge_at_camera_size=at_camera))
    rgb = np.zeros((1200, 2000, 3), np.uint8)
    f = pipe.step(rgb)
    assert be.shape == (1, 384, 640, 3)  # 2000x1200 -> 640x384
    assert f.segment_map.shape == f.semantic.shape == f.panoptic.shape == (1200, 2000)
    np.testing.assert_array_equal(
        f.panoptic, f.semantic.astype(np.int32) * f.label_divisor + f.instance_ids
    )
    for s in f.segments:  # areas are counted at the camera resolution
        assert (f.segment_map == s.id).sum() == s.area
    people = [s for s in f.segments if s.is_thing]
    assert sorted(s.track_id for s in people) == [1, 2]
    # person A: network cells (2..7, 2..6) of 8 px, times 2000 / 640 = 3.125 in the camera
    y, x = int(4.5 * 8 * 3.125), int(4 * 8 * 3.125)
    assert f.semantic[y, x] == 11 and f.instance_ids[y, x] > 0


def test_merge_at_scaled_size_matches_the_camera_size_merge_almost_everywhere():
    frames = []
    for at_camera in (False, True):
        pipe = VideoPanopticPipeline(
            ScriptedBackend(), CFG, PipelineConfig(merge_at_camera_size=at_camera)
        )
        frames.append(pipe.step(np.zeros((600, 1000, 3), np.uint8)))
    fast, full = frames
    agree = (fast.panoptic == full.panoptic).mean()
    assert agree > 0.99, agree  # they differ only along mask borders
