"""Kernel linking and kernel fusion blocks (Video K-Net §3; video_knet.md §4.1-§4.3).

B batch, N kernels, C channels. One block = [KernelUpdator refresh of the reference kernels] ->
cross-attention (query = current kernels, key/value = reference kernels) + LN -> FFN + LN.
* linking ``ffn`` (R-50 configs): no refresh; the output feeds only the embedding head.
* linking ``update`` (Swin configs): the reference kernels are first refreshed with the current
  frame's group features.
* fusion (Swin configs): the same block with refresh, applied to the kernels *entering* the last
  stage, so it changes segmentation.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from vknet_core.model.kernel_update import FFN, KernelUpdator, MultiheadAttention, attend


class KernelLinkBlock(nn.Module):
    def __init__(self, channels: int, num_heads: int, ffn_channels: int, refresh: bool):
        super().__init__()
        self.updator = KernelUpdator(channels) if refresh else None
        self.attention = MultiheadAttention(channels, num_heads)
        self.attention_norm = nn.LayerNorm(channels)
        self.ffn = FFN(channels, ffn_channels)
        self.ffn_norm = nn.LayerNorm(channels)
        for p in self.parameters():  # part of the official kernel-update head: xavier init
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, kernels: Tensor, ref_kernels: Tensor, group_feats: Optional[Tensor] = None
    ) -> Tensor:
        """kernels [B,N,C] (query), ref_kernels [B,N,C] (previous frame), group_feats [B,N,C]
        (current frame's hard-mask sums, used by the refresh) -> linked kernels [B,N,C]."""
        if self.updator is not None:
            assert group_feats is not None
            ref_kernels = self.updator(group_feats, ref_kernels)  # slot i <- current mask i
        linked = self.attention_norm(attend(self.attention, kernels, ref_kernels))
        return self.ffn_norm(self.ffn(linked))
