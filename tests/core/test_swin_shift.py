"""The official Swin shift rule: shifted blocks always roll by window // 2 and mask with -100.

Our ``OfficialShiftWindowAttention`` is checked against the direct, per-window reference of
``tests/core/swin_reference.py`` on maps smaller than, equal to and larger than the window
(7), and torchvision's stock rule is shown to differ where the map pads to one window.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models.swin_transformer import ShiftedWindowAttention

from tests.core.swin_reference import WINDOW, _attention
from vknet_core.model.backbone import OfficialShiftWindowAttention

DIM, HEADS = 32, 4

# (H, W): smaller than the window on one or both axes, exactly the window, larger (with padding)
SIZES = [(4, 8), (3, 3), (7, 7), (7, 14), (4, 16), (12, 20), (14, 21)]


def _attn(cls, shift: int) -> ShiftedWindowAttention:
    torch.manual_seed(0)
    m = cls(DIM, [WINDOW, WINDOW], [shift, shift], HEADS).eval()
    with torch.no_grad():
        m.relative_position_bias_table.normal_(0.0, 1.0)  # large enough to matter
        m.qkv.bias.normal_(0.0, 0.5)
    return m


def _reference(m: ShiftedWindowAttention, x: torch.Tensor, shift: int) -> torch.Tensor:
    sd = {k: v for k, v in m.state_dict().items()}
    return torch.stack([_attention(sd, "", xi, HEADS, shift) for xi in x])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shift", [0, WINDOW // 2])
@torch.no_grad()
def test_window_attention_matches_the_official_rule(size, shift):
    m = _attn(OfficialShiftWindowAttention, shift)
    x = torch.randn(2, *size, DIM, generator=torch.Generator().manual_seed(1))  # [B, H, W, C]
    ours, ref = m(x), _reference(m, x, shift)
    err = float((ours - ref).abs().max() / ref.abs().max())
    assert err < 1e-5, f"{size} shift {shift}: relative error {err:.3g}"


@torch.no_grad()
def test_torchvision_drops_the_shift_on_small_maps():
    """The bug the rule fixes: torchvision zeroes the shift where the padded map is one window
    (4x8 pads to 7x14: the height shift is dropped), and agrees where the map is larger."""
    x = torch.randn(1, 4, 8, DIM, generator=torch.Generator().manual_seed(2))
    stock = _attn(ShiftedWindowAttention, WINDOW // 2)
    ref = _reference(stock, x, WINDOW // 2)
    assert float((stock(x) - ref).abs().max() / ref.abs().max()) > 1e-2
    x = torch.randn(1, 12, 20, DIM, generator=torch.Generator().manual_seed(3))
    ref = _reference(stock, x, WINDOW // 2)
    assert float((stock(x) - ref).abs().max() / ref.abs().max()) < 1e-5


def test_keys_are_torchvision_names():
    ours = _attn(OfficialShiftWindowAttention, 3).state_dict()
    stock = _attn(ShiftedWindowAttention, 3).state_dict()
    assert list(ours) == list(stock)
