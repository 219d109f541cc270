"""Kernel head ("RPN", K-Net ConvKernelHead; video_knet.md §2.5).

B batch, C channels, Q thing kernels, K classes (things first), h x w stride-8 map,
N = Q + K_stuff.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from vknet_core.model.neck import ConvGNReLU


def hard_mask_sum(mask_logits: Tensor, feats: Tensor) -> Tensor:
    """Sum of features under each hard mask (sigmoid > 0.5), as a MatMul (no Einsum).

    mask_logits [B,N,h,w], feats [B,C,h,w] -> [B,N,C]. A *sum*, not a mean (§12 item 7).
    """
    hard = (mask_logits.sigmoid() > 0.5).to(feats.dtype).flatten(2)  # [B, N, hw]
    return hard @ feats.flatten(2).transpose(1, 2)  # [B,N,hw] @ [B,hw,C] -> [B,N,C]


class KernelHeadOutputs(NamedTuple):
    x_feats: Tensor  # [B, C, h, w] the feature map of every update stage
    kernels: Tensor  # [B, N, C] initial kernels (Q things, then stuff)
    mask_logits: Tensor  # [B, N, h, w] initial masks (Q things, then stuff semantic logits)
    sem_logits: Tensor  # [B, K, h, w] semantic logits (things first)


class KernelHead(nn.Module):
    def __init__(
        self, channels: int, num_thing_kernels: int, num_classes: int, num_things: int, groups: int
    ):
        super().__init__()
        self.num_things = num_things
        self.loc_conv = ConvGNReLU(channels, channels, 1, groups)
        self.seg_conv = ConvGNReLU(channels, channels, 1, groups)
        self.init_kernels = nn.Conv2d(channels, num_thing_kernels, 1, bias=False)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        for m in (self.loc_conv.conv, self.seg_conv.conv, self.conv_seg):
            nn.init.normal_(m.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)
        nn.init.normal_(self.init_kernels.weight, std=1.0)  # kernel_init_std=1

    def forward(self, thing_map: Tensor, stuff_map: Tensor) -> KernelHeadOutputs:
        """thing_map, stuff_map [B,C,h,w] (semantic-FPN outputs)."""
        B = thing_map.shape[0]
        loc_feats = self.loc_conv(thing_map)
        seg_feats = self.seg_conv(stuff_map)
        thing_masks = self.init_kernels(loc_feats)  # [B, Q, h, w]
        sem_logits = self.conv_seg(seg_feats)  # [B, K, h, w]
        x_feats = loc_feats + seg_feats  # [B, C, h, w]
        w = self.init_kernels.weight.flatten(1)  # [Q, C]
        thing_kernels = w[None] + hard_mask_sum(thing_masks, x_feats)  # [B, Q, C]
        stuff_kernels = self.conv_seg.weight.flatten(1)[self.num_things :]  # [K_stuff, C], no bias
        kernels = torch.cat((thing_kernels, stuff_kernels[None].expand(B, -1, -1)), dim=1)
        masks = torch.cat((thing_masks, sem_logits[:, self.num_things :]), dim=1)  # [B, N, h, w]
        return KernelHeadOutputs(x_feats, kernels, masks, sem_logits)
