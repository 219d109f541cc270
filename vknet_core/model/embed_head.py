"""Kernel association embedding head (video_knet.md §4.4). B batch, Q thing kernels, C, E.

detector part: Linear (no bias) -> LN -> ReLU -> Linear (``embed_fcs``, ``fc_embed``);
track head (QDTrack ``QuasiDenseMaskEmbedHeadGTMask``, no convs): 2x (Linear + ReLU) -> Linear.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class EmbedHead(nn.Module):
    def __init__(self, channels: int, embed_channels: int, num_track_fcs: int = 2):
        super().__init__()
        C, E = channels, embed_channels
        self.embed_fcs = nn.Sequential(nn.Linear(C, C, bias=False), nn.LayerNorm(C), nn.ReLU())
        self.fc_embed = nn.Linear(C, C)
        self.track_fcs = nn.ModuleList(nn.Linear(C, C) for _ in range(num_track_fcs))
        self.track_embed = nn.Linear(C, E)
        for fc in self.track_fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.track_embed.weight, std=0.01)
        nn.init.zeros_(self.track_embed.bias)

    def forward(self, kernels: Tensor) -> Tensor:
        """kernels [..., C] -> embeddings [..., E]."""
        x = self.fc_embed(self.embed_fcs(kernels))
        for fc in self.track_fcs:
            x = F.relu(fc(x))
        return self.track_embed(x)
