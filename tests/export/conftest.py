"""Shared fixtures: one tiny model (seeded, with class biases that make thing segments and tracks
appear on the synthetic clip), its checkpoint and its ONNX export, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vknet_core
from vknet_export.to_onnx import export_model

HEIGHT, WIDTH = 128, 256  # tiny network size for CPU tests (multiples of 32)


def make_tiny_model() -> vknet_core.VideoKNet:
    """Random tiny model whose last-stage class biases favour things (person/car), so the merge
    keeps thing segments and the tracker assigns ids: the pipeline comparison is not vacuous."""
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    T = model.cfg.labels.num_things
    with torch.no_grad():
        bias = model.stages[-1].fc_cls.bias
        bias.fill_(-1.0)
        bias[:T] = 6.0
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    vknet_core.save_checkpoint(tiny_model, path)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_model(tiny_model, path, HEIGHT, WIDTH)
    return path


@pytest.fixture(scope="session")
def tiny_onnx_dynamic(tiny_model, tmp_path_factory) -> Path:
    """Dynamic H/W export, sample size 64x96."""
    path = tmp_path_factory.mktemp("onnx") / "tiny_dynamic.onnx"
    export_model(tiny_model, path, 64, 96, dynamic=True)
    return path
