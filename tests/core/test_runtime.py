"""TorchBackend: BatchNorm folded with unchanged outputs, C-order outputs, thread setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vknet_core
from vknet_core.model.backbone import ResNetBackbone
from vknet_core.model.fold_bn import fold_batchnorm
from vknet_core.model.vknet import FrameStep
from vknet_core.runtime import TorchBackend
from vknet_core.types import OUTPUT_NAMES


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial frozen statistics, so folding is tested against real affine maps."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g) * 0.5 + 1)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


def _feeds(cfg, h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8),
        "prev_kernels": rng.standard_normal((1, cfg.num_kernels, cfg.neck.channels)).astype(
            np.float32
        ),
        "has_prev": np.ones((1,), np.float32),
    }


def test_fold_resnet_backbone_is_exact_within_fp32():
    torch.manual_seed(0)
    net = ResNetBackbone("resnet18").eval()
    _randomise_bn(net)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    folded, n = fold_batchnorm(net)
    assert n == n_bn == 20  # stem + 8 blocks x 2 + 3 downsamples
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the input is untouched
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(net(x), folded(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item())


def test_torch_backend_folds_tiny_model_and_matches_unfolded():
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    _randomise_bn(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    feeds = _feeds(model.cfg)
    with TorchBackend(model) as be:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in be._step.modules())
        got = be.step(feeds)
    with torch.inference_mode():
        ref = FrameStep(model).eval()(
            *(torch.from_numpy(feeds[n]) for n in ("image", "prev_kernels", "has_prev"))
        )
    for name in OUTPUT_NAMES:
        r = getattr(ref, name).numpy()
        np.testing.assert_allclose(
            got[name], r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name
        )


def test_torch_backend_outputs_are_c_contiguous():
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    with TorchBackend(model) as be:
        out = be.step(_feeds(model.cfg))
    assert set(out) == set(OUTPUT_NAMES)
    for name, a in out.items():
        assert a.flags["C_CONTIGUOUS"], name  # sem_logits leaves the model channels_last


def test_torch_backend_threads():
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    before = torch.get_num_threads()
    try:
        TorchBackend(model, threads=1).close()
        assert torch.get_num_threads() == 1
        TorchBackend(model).close()  # None keeps the setting
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        TorchBackend(model, threads=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_cuda_matches_cpu():
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    _randomise_bn(model)
    feeds = _feeds(model.cfg)
    with TorchBackend(model, "cpu") as cpu, TorchBackend(model, "cuda") as gpu:
        a, b = cpu.step(feeds), gpu.step(feeds)
    for name in OUTPUT_NAMES:
        assert b[name].flags["C_CONTIGUOUS"], name
        np.testing.assert_allclose(
            b[name], a[name], rtol=1e-3, atol=1e-3 * np.abs(a[name]).max(), err_msg=name
        )
