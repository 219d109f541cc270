"""FPN (P2..P5) and the semantic-FPN wrapper fusing them to stride 8 (video_knet.md §2.3-§2.4).

B batch, C channels, h x w = H/8 x W/8.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvGNReLU(nn.Module):
    """conv (no bias) -> GroupNorm -> ReLU; key names ``conv``/``gn`` as mmcv's ConvModule."""

    def __init__(self, cin: int, cout: int, k: int, groups: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.gn = nn.GroupNorm(groups, cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.gn(self.conv(x)))


class FPN(nn.Module):
    """mmdet FPN, 4 outputs, no extra levels: lateral 1x1 -> top-down nearest add -> 3x3."""

    def __init__(self, in_channels: tuple[int, ...], channels: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """[C2..C5] -> [P2..P5], each [B,C,H/s,W/s]."""
        lats = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(lats) - 1, 0, -1):
            lats[i - 1] = lats[i - 1] + F.interpolate(
                lats[i], size=lats[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.fpn_convs, lats)]


def sine_position_encoding(h: int, w: int, num_feats: int, device: torch.device) -> Tensor:
    """mmdet SinePositionalEncoding(normalize=True) of an all-valid mask -> [1, 2*num_feats, h, w].

    Channels are [y-part, x-part], each interleaved sin/cos. Constant for a fixed size (the
    ONNX exporter folds it).
    """
    eps, scale, temperature = 1e-6, 2 * math.pi, 10000.0
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
    y = y / (y[-1:] + eps) * scale  # [h]
    x = x / (x[-1:] + eps) * scale  # [w]
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_y = y[:, None] / dim_t  # [h, F]
    pos_x = x[:, None] / dim_t  # [w, F]
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat(
        (pos_y[:, None, :].expand(h, w, num_feats), pos_x[None, :, :].expand(h, w, num_feats)),
        dim=2,
    )  # [h, w, 2F]
    return pos.permute(2, 0, 1)[None]


class _Level(nn.Module):
    """Tower of one FPN level: conv0 [-> x2 -> conv1 [-> x2 -> conv2]] to stride 8."""

    def __init__(self, level: int, channels: int, groups: int):
        super().__init__()
        self.num_convs = max(level, 1)
        stride = 2 if level == 0 else 1  # P2 (stride 4) enters through a stride-2 conv
        for j in range(self.num_convs):
            self.add_module(f"conv{j}", ConvGNReLU(channels, channels, 3, groups, stride))

    def forward(self, x: Tensor) -> Tensor:
        for j in range(self.num_convs):
            if j > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = getattr(self, f"conv{j}")(x)
        return x


class SemanticFPN(nn.Module):
    """Sum of the P2..P5 towers at stride 8 -> (thing map, stuff map), each [B,C,h,w]."""

    def __init__(self, channels: int, groups: int, num_levels: int = 4):
        super().__init__()
        self.levels = nn.ModuleList(_Level(i, channels, groups) for i in range(num_levels))
        self.conv_pred = ConvGNReLU(channels, channels, 1, groups)
        self.aux_conv = ConvGNReLU(channels, channels, 1, groups)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)

    def forward(self, p: list[Tensor]) -> tuple[Tensor, Tensor]:
        B, C, h5, w5 = p[-1].shape
        top = p[-1] + sine_position_encoding(h5, w5, C // 2, p[-1].device)  # PE on P5 only
        feats = [tower(x) for tower, x in zip(self.levels, p[:-1] + [top])]
        fused = feats[0]
        for f in feats[1:]:
            fused = fused + f  # [B, C, h, w]
        return self.conv_pred(fused), self.aux_conv(fused)
