"""A direct, slow reference of the official Swin detection backbone (``SwinTransformerDIY``).

Written from the official description (Swin-Transformer-Object-Detection, as used by Video K-Net),
independently of ``vknet_core.model.backbone``: it reads the official mmdet keys
(``backbone.layers.{i}.blocks.{j}.attn.qkv.weight`` ...) and loops over windows one by one.

The official rules it encodes:
* patch embedding: 4x4 stride-4 conv, then LayerNorm over channels;
* block j of a stage shifts by ``shift = window // 2`` when j is odd and by 0 when even, *always*,
  whatever the size of the map (no "map smaller than the window" exception);
* a block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``; attention pads norm1(x) with zeros
  at the bottom/right to a multiple of the window, rolls it by ``-shift`` on both axes, splits it
  into windows, and inside a window adds the relative position bias and, when shifted, -100
  between tokens of different regions, then rolls back by ``+shift`` and crops;
  regions: each padded axis of length P is cut into ``[0, P-window)``, ``[P-window, P-shift)``,
  ``[P-shift, P)`` (coordinates of the rolled map), region = (row cut, column cut);
* patch merging: concatenate x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]
  (zero pad to even size first), LayerNorm, linear without bias;
* output i = ``norm{i}`` of stage i's output (before its patch merging), channels first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WINDOW = 7


def _region(pos: int, size: int, shift: int) -> int:
    """Official region index of coordinate ``pos`` (rolled frame) on an axis of padded ``size``."""
    if pos < size - WINDOW:
        return 0
    return 1 if pos < size - shift else 2


def _attention(sd: dict[str, Tensor], p: str, x: Tensor, heads: int, shift: int) -> Tensor:
    """x [H, W, C] (already norm1) -> [H, W, C]: one window at a time."""
    H, W, C = x.shape
    Hp, Wp = -(-H // WINDOW) * WINDOW, -(-W // WINDOW) * WINDOW
    pad = torch.zeros(Hp, Wp, C, dtype=x.dtype)
    pad[:H, :W] = x
    rolled = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1))
    table = sd[p + "relative_position_bias_table"]  # [(2w-1)^2, heads]
    coords = [(r, c) for r in range(WINDOW) for c in range(WINDOW)]  # token order in a window
    r, c = torch.tensor(coords).T  # [N] each
    index = (r[:, None] - r[None, :] + WINDOW - 1) * (2 * WINDOW - 1) + (
        c[:, None] - c[None, :] + WINDOW - 1
    )
    bias = table[index].permute(2, 0, 1)  # [heads, N, N]: bias[h, a, b] for query a, key b
    out = torch.zeros_like(rolled)
    d = C // heads
    for r0 in range(0, Hp, WINDOW):
        for c0 in range(0, Wp, WINDOW):
            tokens = rolled[r0 : r0 + WINDOW, c0 : c0 + WINDOW].reshape(-1, C)  # [N, C]
            qkv = F.linear(tokens, sd[p + "qkv.weight"], sd[p + "qkv.bias"])
            q, k, v = qkv.view(-1, 3, heads, d).permute(1, 2, 0, 3)  # each [heads, N, d]
            logits = (q * d**-0.5) @ k.transpose(1, 2) + bias
            if shift > 0:
                ids = torch.tensor(
                    [
                        _region(r0 + r, Hp, shift) * 3 + _region(c0 + c, Wp, shift)
                        for r, c in coords
                    ]
                )
                logits = logits + (ids[None, :] != ids[:, None]).to(x.dtype) * -100.0
            y = (logits.softmax(-1) @ v).transpose(0, 1).reshape(-1, C)
            y = F.linear(y, sd[p + "proj.weight"], sd[p + "proj.bias"])
            out[r0 : r0 + WINDOW, c0 : c0 + WINDOW] = y.view(WINDOW, WINDOW, C)
    return torch.roll(out, shifts=(shift, shift), dims=(0, 1))[:H, :W]


def _ln(sd: dict[str, Tensor], p: str, x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[p + "weight"], sd[p + "bias"], eps=1e-5)


def _block(sd: dict[str, Tensor], p: str, x: Tensor, heads: int, shift: int) -> Tensor:
    x = x + _attention(sd, p + "attn.", _ln(sd, p + "norm1.", x), heads, shift)
    h = _ln(sd, p + "norm2.", x)
    h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
    return x + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])


def _merge(sd: dict[str, Tensor], p: str, x: Tensor) -> Tensor:
    H, W, _ = x.shape
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x = torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1)
    return F.linear(_ln(sd, p + "norm.", x), sd[p + "reduction.weight"])


@torch.no_grad()
def official_swin(
    sd: dict[str, Tensor], image: Tensor, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32)
) -> list[Tensor]:
    """Official key state dict, image [1, 3, H, W] normalised -> 4 maps [1, c_i, H/2^(i+2), ..]."""
    pe = "backbone.patch_embed."
    x = F.conv2d(image, sd[pe + "proj.weight"], sd[pe + "proj.bias"], stride=4)
    x = x[0].permute(1, 2, 0)  # [H/4, W/4, C]
    x = _ln(sd, pe + "norm.", x)
    outs = []
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        if i > 0:
            x = _merge(sd, f"backbone.layers.{i - 1}.downsample.", x)
        for j in range(depth):
            shift = WINDOW // 2 if j % 2 else 0
            x = _block(sd, f"backbone.layers.{i}.blocks.{j}.", x, nh, shift)
        outs.append(_ln(sd, f"backbone.norm{i}.", x).permute(2, 0, 1)[None])
    return outs
