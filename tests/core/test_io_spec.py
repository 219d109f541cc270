"""io_spec: names, shapes and dtypes derived from the config; feed checks with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from vknet_core.config import get_preset
from vknet_core.io_spec import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    check_feeds,
    dummy_inputs,
    from_metadata,
    graph_metadata,
    initial_state,
    io_spec,
)


def test_kitti_step_r50_shapes_match_design():
    spec = io_spec(get_preset("kitti_step_r50"), 384, 1248)
    assert tuple(t.name for t in spec.inputs) == INPUT_NAMES
    assert tuple(t.name for t in spec.outputs) == OUTPUT_NAMES
    shapes = {t.name: (t.shape, t.dtype) for t in spec.inputs + spec.outputs}
    assert shapes == {
        "image": ((1, 384, 1248, 3), "uint8"),
        "prev_kernels": ((1, 117, 256), "float32"),
        "has_prev": ((1,), "float32"),
        "cls_prob": ((1, 117, 19), "float32"),
        "mask_logits": ((1, 117, 48, 156), "float32"),
        "cur_kernels": ((1, 117, 256), "float32"),
        "track_embed": ((1, 100, 256), "float32"),
        "sem_logits": ((1, 19, 48, 156), "float32"),
    }
    assert spec.dynamic_axes() is None


def test_dynamic_spec_axes_and_concrete():
    spec = io_spec(get_preset("tiny"), 128, 256, dynamic=True)
    axes = spec.dynamic_axes()
    assert axes["image"] == {1: "height", 2: "width"}
    assert axes["mask_logits"] == {2: "h8", 3: "w8"}
    assert "prev_kernels" not in axes
    fixed = spec.concrete(64, 96)
    assert fixed.input("image").shape == (1, 64, 96, 3)
    assert fixed.output("sem_logits").shape == (1, 19, 8, 12)


@pytest.mark.parametrize("hw", [(100, 256), (128, 0), (-32, 64)])
def test_size_must_be_multiple_of_32(hw):
    with pytest.raises(ValueError, match="multiples of 32, got"):
        io_spec(get_preset("tiny"), *hw)


def test_dummy_inputs_fit_and_initial_state_is_zero():
    spec = io_spec(get_preset("tiny"), 64, 96)
    feeds = dummy_inputs(spec, seed=3)
    check_feeds(spec, feeds)
    assert not feeds["prev_kernels"].any() and feeds["has_prev"][0] == 0
    linked = dummy_inputs(spec, seed=3, has_prev=True)
    assert linked["has_prev"][0] == 1 and linked["prev_kernels"].std() > 0.5
    assert set(initial_state(spec)) == {"prev_kernels", "has_prev"}


def test_check_feeds_says_what_was_received():
    spec = io_spec(get_preset("tiny"), 64, 96)
    feeds = dummy_inputs(spec)
    with pytest.raises(ValueError, match=r"missing \['has_prev'\]"):
        check_feeds(spec, {k: v for k, v in feeds.items() if k != "has_prev"})
    with pytest.raises(ValueError, match="'image' must be uint8, got float32"):
        check_feeds(spec, dict(feeds, image=feeds["image"].astype(np.float32)))
    with pytest.raises(ValueError, match=r"'prev_kernels' has shape \[1, 36, 64\], expected"):
        check_feeds(spec, dict(feeds, prev_kernels=np.zeros((1, 36, 64), np.float32)))
    with pytest.raises(ValueError, match="unexpected"):
        check_feeds(spec, dict(feeds, extra=np.zeros(1)))
    dyn = io_spec(get_preset("tiny"), 64, 96, dynamic=True)
    check_feeds(dyn, dict(feeds, image=np.zeros((1, 128, 64, 3), np.uint8)))
    with pytest.raises(ValueError, match="multiples of 32"):
        check_feeds(dyn, dict(feeds, image=np.zeros((1, 100, 64, 3), np.uint8)))


def test_metadata_round_trip_and_clear_errors():
    cfg = get_preset("tiny")
    for spec in (io_spec(cfg, 128, 256), io_spec(cfg, 64, 96, dynamic=True)):
        meta = graph_metadata(cfg, spec)
        assert all(isinstance(v, str) for v in meta.values())
        assert from_metadata(meta) == (cfg, spec)
    with pytest.raises(ValueError, match=r"m.onnx has no vknet metadata.*keys present: \['x'\]"):
        from_metadata({"x": "1"}, "m.onnx")
    bad = dict(graph_metadata(cfg, io_spec(cfg, 64, 96)), vknet_height="65")
    with pytest.raises(ValueError, match="corrupt vknet metadata.*multiples of 32, got 65x96"):
        from_metadata(bad, "m.onnx")


def test_dynamic_spec_without_sample_size():
    """The PyTorch backend's spec: any multiple of 32, no export size."""
    spec = io_spec(get_preset("tiny"), dynamic=True)
    assert (spec.height, spec.width, spec.dynamic) == (0, 0, True)
    feeds = dummy_inputs(spec.concrete(96, 160))
    check_feeds(spec, feeds)
    with pytest.raises(ValueError, match="no sample size; use spec.concrete"):
        dummy_inputs(spec)
    with pytest.raises(ValueError, match="multiples of 32, got 0x0"):
        io_spec(get_preset("tiny"))  # a fixed-size spec needs its size
    with pytest.raises(ValueError, match=r"'prev_kernels' has shape \[1, 37, 32\], expected"):
        check_feeds(spec, dict(feeds, prev_kernels=np.zeros((1, 37, 32), np.float32)))


def test_network_device_is_typed():
    import torch

    from vknet_core.backend import network_device

    assert network_device("cpu") == torch.device("cpu")
    assert network_device("cuda") == torch.device("cuda", 0)
    assert network_device("tensorrt:1") == torch.device("cuda", 1)  # ORT's TensorRT provider
    for bad in ("npu", "cuda:x", "cpu:0", ""):
        with pytest.raises(ValueError, match="device must be cpu, cuda"):
            network_device(bad)
