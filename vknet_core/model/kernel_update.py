"""Kernel update stage (K-Net §3.2; video_knet.md §3). B batch, N kernels, C channels, K classes.

One stage: 1x1 feature transform -> hard-mask sum pooling -> gated KernelUpdator -> post-norm MHSA
-> FFN -> cls / mask heads -> 1x1 dynamic conv (a batched MatMul). The last stage of a
fusion model first fuses the previous frame's kernels into its input kernels (§4.2).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vknet_core.model.kernel_head import hard_mask_sum


class KernelUpdator(nn.Module):
    """Adaptive kernel update (K-Net Eq. 5-7); names follow the official ``KernelUpdator``."""

    def __init__(self, channels: int):
        super().__init__()
        C = channels
        self.dynamic_layer = nn.Linear(C, 2 * C)
        self.input_layer = nn.Linear(C, 2 * C)
        self.input_gate = nn.Linear(C, C)
        self.update_gate = nn.Linear(C, C)
        self.norm_in, self.norm_out = nn.LayerNorm(C), nn.LayerNorm(C)
        self.input_norm_in, self.input_norm_out = nn.LayerNorm(C), nn.LayerNorm(C)
        self.fc_layer = nn.Linear(C, C)
        self.fc_norm = nn.LayerNorm(C)

    def forward(self, group_feats: Tensor, kernels: Tensor) -> Tensor:
        """group_feats F [B,N,C] (hard-mask sums), kernels K [B,N,C] -> updated kernels [B,N,C]."""
        C = kernels.shape[-1]
        params = self.dynamic_layer(group_feats)  # [B, N, 2C]
        p_in, p_out = params[..., :C], params[..., C:]
        inputs = self.input_layer(kernels)  # [B, N, 2C]
        q_in, q_out = inputs[..., :C], inputs[..., C:]
        gate = q_in * p_in  # F^G
        g_k = self.input_norm_in(self.input_gate(gate)).sigmoid()  # gate on the kernel branch
        g_f = self.norm_in(self.update_gate(gate)).sigmoid()  # gate on the feature branch
        out = g_f * self.norm_out(p_out) + g_k * self.input_norm_out(q_out)
        return F.relu(self.fc_norm(self.fc_layer(out)))


class FFN(nn.Module):
    """mmcv FFN with its identity: x + fc2(relu(fc1(x)))."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(F.relu(self.fc1(x)))


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter names, written out as
    MatMul + Softmax (one graph in eager, ONNX and TensorRT; no fused fast path)."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        """query [B,N,C], key (= value) [B,M,C] -> [B,N,C]."""
        B, N, C = query.shape
        M, H = key.shape[1], self.num_heads
        w_q, w_kv = self.in_proj_weight.split((C, 2 * C))
        b_q, b_kv = self.in_proj_bias.split((C, 2 * C))
        q = F.linear(query, w_q, b_q).view(B, N, H, C // H).transpose(1, 2)  # [B, H, N, d]
        k, v = F.linear(key, w_kv, b_kv).view(B, M, 2, H, C // H).permute(2, 0, 3, 1, 4)
        attn = ((q * (C // H) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)  # [B, H, N, M]
        out = (attn @ v).transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.out_proj(out)


def attend(attn: MultiheadAttention, query: Tensor, key: Tensor) -> Tensor:
    """mmcv MultiheadAttention with its identity: query + MHA(query, key, key); [B,N,C]."""
    return query + attn(query, key)


class StageOutputs(NamedTuple):
    kernels: Tensor  # [B, N, C] the stage's kernels (after FFN + LN)
    cls_logits: Tensor  # [B, N, K]
    mask_logits: Tensor  # [B, N, h, w] stride 8, input masks of the next stage
    group_feats: Tensor  # [B, N, C] hard-mask sums of this stage (used by "update" linking)


class KernelUpdateStage(nn.Module):
    def __init__(
        self,
        channels: int,
        num_classes: int,
        num_heads: int,
        ffn_channels: int,
        fusion: Optional[nn.Module] = None,
    ):
        super().__init__()
        C = channels
        self.feat_transform = nn.Conv2d(C, C, 1)
        self.kernel_update_conv = KernelUpdator(C)
        self.attention = MultiheadAttention(C, num_heads)
        self.attention_norm = nn.LayerNorm(C)
        self.ffn = FFN(C, ffn_channels)
        self.ffn_norm = nn.LayerNorm(C)
        self.cls_fcs = nn.Sequential(nn.Linear(C, C, bias=False), nn.LayerNorm(C), nn.ReLU())
        self.fc_cls = nn.Linear(C, num_classes)
        self.mask_fcs = nn.Sequential(nn.Linear(C, C, bias=False), nn.LayerNorm(C), nn.ReLU())
        self.fc_mask = nn.Linear(C, C)
        self.fusion = fusion  # KernelLinkBlock (Swin configs) or None
        for p in self.parameters():  # official init: xavier on every >=2-D parameter
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.fc_cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward(
        self,
        x_feats: Tensor,
        kernels: Tensor,
        mask_logits: Tensor,
        prev_kernels: Optional[Tensor] = None,
        has_prev: Optional[Tensor] = None,
    ) -> StageOutputs:
        """x_feats [B,C,h,w], kernels [B,N,C], mask_logits [B,N,h,w] (previous stage's).

        ``prev_kernels`` [B,N,C] / ``has_prev`` [B] are used only by the fusion block.
        """
        B, C, h, w = x_feats.shape
        feats = self.feat_transform(x_feats)  # [B, C, h, w]
        group_feats = hard_mask_sum(mask_logits, feats)  # [B, N, C]
        if self.fusion is not None:
            assert prev_kernels is not None and has_prev is not None
            fused = self.fusion(kernels, prev_kernels, group_feats)  # [B, N, C]
            kernels = torch_where_prev(has_prev, fused, kernels)
        kernels = self.kernel_update_conv(group_feats, kernels)  # [B, N, C]
        kernels = self.attention_norm(attend(self.attention, kernels, kernels))
        kernels = self.ffn_norm(self.ffn(kernels))  # [B, N, C]
        cls_logits = self.fc_cls(self.cls_fcs(kernels))  # [B, N, K]
        mask_kernels = self.fc_mask(self.mask_fcs(kernels))  # [B, N, C]
        masks = mask_kernels @ feats.flatten(2)  # [B,N,C] @ [B,C,hw] -> [B,N,hw]
        return StageOutputs(kernels, cls_logits, masks.view(B, -1, h, w), group_feats)


def torch_where_prev(has_prev: Tensor, if_prev: Tensor, if_first: Tensor) -> Tensor:
    """Select per batch element: has_prev [B] (0/1 float), tensors [B, ...]."""
    cond = (has_prev > 0.5).view(-1, *([1] * (if_prev.dim() - 1)))
    return if_prev.where(cond, if_first)
