"""Backends by name, one protocol, clear errors on bad feeds / missing runtimes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.export.conftest import HEIGHT, WIDTH
from vknet_core.backend import Backend
from vknet_core.io_spec import IOSpec, dummy_inputs
from vknet_export.backends import make_backend
from vknet_export.engine_cache import EngineCacheError
from vknet_export.ort_backend import OrtBackend, providers_for


def test_torch_and_onnxruntime_by_name_agree(tiny_checkpoint, tiny_onnx, tiny_model):
    torch_be = make_backend("torch", tiny_checkpoint, device="cpu")
    ort_be = make_backend("onnxruntime", tiny_onnx, device="cpu")
    for be in (torch_be, ort_be):  # both satisfy the typed protocol of vknet_core.backend
        assert isinstance(be, Backend)
        assert be.cfg == tiny_model.cfg  # given at construction (ORT: the graph's metadata)
        assert isinstance(be.device, torch.device) and be.device.type == "cpu"
        assert isinstance(be.spec, IOSpec) and be.spec.num_kernels == tiny_model.cfg.num_kernels
    assert torch_be.spec.dynamic and (torch_be.spec.height, torch_be.spec.width) == (0, 0)
    assert (ort_be.spec.height, ort_be.spec.width, ort_be.spec.dynamic) == (HEIGHT, WIDTH, False)
    feeds = dummy_inputs(ort_be.spec, seed=7, has_prev=True)
    a, b = torch_be.step(feeds), ort_be.step(feeds)
    assert set(a) == set(b)
    np.testing.assert_allclose(a["cls_prob"], b["cls_prob"], atol=1e-4)
    for be in (torch_be, ort_be):
        be.close()
    with pytest.raises(RuntimeError, match="closed"):
        ort_be.step(feeds)


def test_ort_backend_checks_feeds(tiny_onnx):
    with OrtBackend(tiny_onnx) as be:
        feeds = dummy_inputs(be.spec)
        with pytest.raises(
            ValueError,
            match=r"'image' has shape \[1, 64, 64, 3\], expected "
            r"\[1, 128, 256, 3\]",
        ):
            be.step(dict(feeds, image=np.zeros((1, 64, 64, 3), np.uint8)))
        with pytest.raises(ValueError, match="'has_prev' must be float32, got float64"):
            be.step(dict(feeds, has_prev=np.zeros(1)))


def test_unknown_backend_missing_file_and_wrong_format(tiny_onnx, tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend("tflite", tiny_onnx)
    with pytest.raises(FileNotFoundError, match="not found"):
        make_backend("onnxruntime", tmp_path / "nope.onnx")
    with pytest.raises(RuntimeError, match="could not load"):
        make_backend("onnxruntime", tiny_checkpoint)  # a .pt is not an ONNX graph


def test_providers_for_devices():
    avail = ["CPUExecutionProvider"]
    assert providers_for("cpu", avail) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match=r"lacks \['CUDAExecutionProvider'\].*onnxruntime-gpu"):
        providers_for("cuda", avail)
    with pytest.raises(ValueError, match="device must be"):
        providers_for("npu", avail)
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    got = providers_for("tensorrt:1", gpu, trt_cache_dir=None)
    assert got[0] == ("TensorrtExecutionProvider", {"device_id": 1})
    assert got[1] == ("CUDAExecutionProvider", {"device_id": 1})


def test_tensorrt_backend_without_tensorrt_fails_clearly(tiny_onnx):
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        import torch

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: see test_trt_gpu.py")
    except ImportError:
        pass
    with pytest.raises(EngineCacheError, match="TensorRT|CUDA"):
        make_backend("tensorrt", tiny_onnx, device="cuda:0")


def test_backend_protocol_needs_device_spec_and_cfg(tiny_onnx):
    with OrtBackend(tiny_onnx) as be:
        assert isinstance(be, Backend)

    class StepAndCloseOnly:
        name = "partial"

        def step(self, feeds):
            return {}

        def close(self):
            pass

    assert not isinstance(StepAndCloseOnly(), Backend)
