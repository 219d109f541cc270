"""Swin-B at small input sizes is the official backbone: recipe weights (official mmdet keys of
``shared/parity/swinb_kitti_step_state_dict.json``) converted as export/convert_official.py does
give the C2..C5 maps of the direct official reference (``tests/core/swin_reference.py``).

At 128x256, C5 is 4x8 and pads to one 7-row window: torchvision's stock rule drops the height shift
of stage 4's shifted blocks there (relative error 0.27 at C5); at 224x224 C5 is exactly 7x7.
No official Swin-B arrays exist, so the reference is the official rule written out, not our output.
Tolerance as in test_parity.py: max|ours-ref| <= 1e-4 * max|ref| + 1e-6.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.core.swin_reference import official_swin
from tests.shared_data import import_shared, require_shared

RTOL = 1e-4
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def official():
    """Recipe state dict with official keys; only the backbone entries are kept in memory."""
    spec = require_shared("parity/swinb_kitti_step_state_dict.json")
    recipe = import_shared("parity/recipe_weights.py")
    sd = recipe.generate_state_dict(str(spec))
    assert recipe.state_dict_sha256(sd) == json.loads(spec.read_text())["recipe_weights_sha256"]
    return sd


@pytest.fixture(scope="module")
def backbone(official):
    """Recipe weights -> the converter behind export/convert_official.py -> our Swin-B model.

    In memory (``convert_state_dict`` is what the CLI runs): the CLI round trip would write and
    read ~0.9 GB of checkpoints; test_parity.py covers the CLI itself with R-50.
    """
    from vknet_core.config import get_preset
    from vknet_core.model.vknet import VideoKNet
    from vknet_core.official import convert_state_dict

    cfg = get_preset("kitti_step_swinb")
    model = VideoKNet(cfg).eval()
    ours, _ = convert_state_dict(official, cfg, model.state_dict())
    model.load_state_dict(ours, strict=True)
    return model.backbone


@pytest.mark.parametrize("size", [(128, 256), (224, 224)])
@torch.no_grad()
def test_swinb_backbone_matches_the_official_rule(official, backbone, size):
    recipe_inputs = import_shared("parity/recipe_inputs.py")
    x = (recipe_inputs.make_clip(*size, 1).float() - MEAN) / STD  # [1, 3, H, W]
    ref = official_swin({k: v for k, v in official.items() if k.startswith("backbone.")}, x)
    ours = backbone(x)
    for i, (o, r) in enumerate(zip(ours, ref)):
        assert o.shape == r.shape == (1, 128 << i, size[0] >> (i + 2), size[1] >> (i + 2))
        err = float((o - r).abs().max())
        scale = float(r.abs().max())
        assert err <= RTOL * scale + 1e-6, f"{size} C{i + 2}: relative error {err / scale:.3g}"
