"""Video K-Net (Li et al., CVPR 2022): one pure per-frame forward with explicit kernel state.

B batch, N kernels (Q things + stuff), C channels, K classes (things first), E embedding,
H x W input (multiples of 32), h x w = H/8 x W/8. The graph below is what training runs frame by
frame, what the PyTorch backend runs and what ONNX/TensorRT export (via ``FrameStep``).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

from vknet_core.config import VKNetConfig, get_preset
from vknet_core.model.backbone import build_backbone
from vknet_core.model.embed_head import EmbedHead
from vknet_core.model.kernel_head import KernelHead
from vknet_core.model.kernel_update import KernelUpdateStage, torch_where_prev
from vknet_core.model.linking import KernelLinkBlock
from vknet_core.model.neck import FPN, SemanticFPN
from vknet_core.types import FrameOutputs, TrainOutputs


class VideoKNet(nn.Module):
    def __init__(self, cfg: VKNetConfig):
        super().__init__()
        self.cfg = cfg
        C, hd, lab = cfg.neck.channels, cfg.head, cfg.labels
        K, Q = lab.num_classes, hd.num_thing_kernels
        self.backbone = build_backbone(cfg.backbone)
        self.fpn = FPN(self.backbone.out_channels, C)
        self.sem_fpn = SemanticFPN(C, cfg.neck.num_groups)
        self.kernel_head = KernelHead(C, Q, K, lab.num_things, cfg.neck.num_groups)

        def block(refresh: bool) -> KernelLinkBlock:
            return KernelLinkBlock(C, hd.num_heads, hd.ffn_channels, refresh)

        self.stages = nn.ModuleList(
            KernelUpdateStage(
                C,
                K,
                hd.num_heads,
                hd.ffn_channels,
                fusion=block(True) if cfg.video.fusion and s == hd.num_stages - 1 else None,
            )
            for s in range(hd.num_stages)
        )
        if cfg.video.link_type not in ("ffn", "update"):
            raise ValueError(f"link_type must be 'ffn' or 'update', got {cfg.video.link_type!r}")
        self.linker = block(cfg.video.link_type == "update")  # last stage only (§4.1)
        self.embed_head = EmbedHead(C, cfg.video.embed_channels)

    def initial_state(self, batch_size: int = 1) -> tuple[Tensor, Tensor]:
        """Zero state for a first frame: (prev_kernels [B,N,C], has_prev [B] = 0)."""
        p = next(self.parameters())
        N, C = self.cfg.num_kernels, self.cfg.neck.channels
        return (
            torch.zeros(batch_size, N, C, device=p.device, dtype=p.dtype),
            torch.zeros(batch_size, device=p.device, dtype=p.dtype),
        )

    def forward(self, image: Tensor, prev_kernels: Tensor, has_prev: Tensor) -> FrameOutputs:
        """image [B,3,H,W] normalised RGB, prev_kernels [B,N,C], has_prev [B] (0/1 float)."""
        return self.forward_train(image, prev_kernels, has_prev).frame

    def forward_train(self, image: Tensor, prev_kernels: Tensor, has_prev: Tensor) -> TrainOutputs:
        """As ``forward``, plus the per-stage predictions the losses need."""
        Q = self.cfg.head.num_thing_kernels
        feats = self.fpn(self.backbone(image))  # P2..P5, [B, C, H/s, W/s]
        thing_map, stuff_map = self.sem_fpn(feats)  # [B, C, h, w] each
        x_feats, kernels, masks, sem_logits = self.kernel_head(thing_map, stuff_map)
        rpn_masks = masks[:, :Q]  # [B, Q, h, w]
        stage_cls, stage_masks = [], []
        for stage in self.stages:  # kernels [B,N,C], masks [B,N,h,w]
            out = stage(x_feats, kernels, masks, prev_kernels, has_prev)
            kernels, masks = out.kernels, out.mask_logits
            stage_cls.append(out.cls_logits)  # [B, N, K]
            stage_masks.append(masks)
        # Linking: cross-attention to the previous frame's final kernels; feeds only the embedding.
        linked = self.linker(kernels, prev_kernels, out.group_feats)  # [B, N, C]
        query = torch_where_prev(has_prev, linked, kernels)  # first frame: unlinked kernels
        track_embed = self.embed_head(query[:, :Q])  # [B, Q, E]
        frame = FrameOutputs(
            cls_prob=stage_cls[-1].sigmoid(),  # [B, N, K]
            mask_logits=masks,  # [B, N, h, w]
            cur_kernels=kernels,  # [B, N, C] unlinked: the next frame's prev_kernels
            track_embed=track_embed,
            sem_logits=sem_logits,  # [B, K, h, w]
        )
        return TrainOutputs(frame, rpn_masks, tuple(stage_cls), tuple(stage_masks))


class FrameStep(nn.Module):
    """uint8 RGB in, normalisation inside: the exported per-frame graph (DESIGN §3.2)."""

    def __init__(self, model: VideoKNet):
        super().__init__()
        self.model = model
        cfg = model.cfg
        self.register_buffer("mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), False)

    def forward(self, image: Tensor, prev_kernels: Tensor, has_prev: Tensor) -> FrameOutputs:
        """image uint8 [B,H,W,3] RGB, prev_kernels [B,N,C], has_prev [B]."""
        x = image.permute(0, 3, 1, 2).float()  # [B, 3, H, W]
        x = (x - self.mean) / self.std
        return self.model(x, prev_kernels, has_prev)


def build_model(cfg: Union[str, VKNetConfig]) -> VideoKNet:
    """Build a Video K-Net from a preset name or a ``VKNetConfig`` (random init, train mode)."""
    return VideoKNet(get_preset(cfg) if isinstance(cfg, str) else cfg)
