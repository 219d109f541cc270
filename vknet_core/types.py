"""Shared value types and the dimension-letter legend.

Dim letters (project-wide): B batch, T clip length, N kernels (Q things + stuff), Q thing kernels,
K classes, C channels, E embedding channels, H x W image, h x w = H/8 x W/8 feature map.
The field names of ``FrameOutputs`` are the graph output names, ``vknet_core.io_spec.OUTPUT_NAMES``
(the per-frame contract lives there; the names are re-exported here for existing imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from torch import Tensor

from vknet_core.io_spec import INPUT_NAMES, OUTPUT_NAMES

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "FrameOutputs",
    "TrainOutputs",
    "Segment",
    "PanopticFrame",
]


class FrameOutputs(NamedTuple):
    """What ``VideoKNet.forward`` returns for one frame (model label order, things first).

    cls_prob:    [B, N, K] float, sigmoid class probabilities of the last stage
    mask_logits: [B, N, h, w] float, last-stage mask logits at stride 8
    cur_kernels: [B, N, C] float, final *unlinked* kernels; feed back as ``prev_kernels``
    track_embed: [B, Q, E] float, association embeddings of all thing kernels
                 (from the linked kernels when has_prev=1, else from the current kernels)
    sem_logits:  [B, K, h, w] float, kernel-head semantic logits (tracker's semantic filter)
    """

    cls_prob: Tensor
    mask_logits: Tensor
    cur_kernels: Tensor
    track_embed: Tensor
    sem_logits: Tensor


assert FrameOutputs._fields == OUTPUT_NAMES, "FrameOutputs must follow io_spec.OUTPUT_NAMES"


class TrainOutputs(NamedTuple):
    """``VideoKNet.forward_train``: the frame outputs plus what the losses need.

    frame:             FrameOutputs (as ``forward``)
    rpn_mask_logits:   [B, Q, h, w] initial thing-kernel mask logits (stride 8)
    stage_cls_logits:  per stage s, [B, N, K] class logits (before sigmoid)
    stage_mask_logits: per stage s, [B, N, h, w] mask logits (stride 8)
    """

    frame: FrameOutputs
    rpn_mask_logits: Tensor
    stage_cls_logits: tuple[Tensor, ...]
    stage_mask_logits: tuple[Tensor, ...]


@dataclass
class Segment:
    """One panoptic segment at camera resolution.

    ``train_id`` is the dataset train id; ``kernel_index`` the kernel (0..N-1) it came from;
    ``track_id`` 0 = stuff or a thing without a track id.
    """

    id: int
    train_id: int
    is_thing: bool
    score: float
    kernel_index: int
    area: int
    track_id: int = 0


@dataclass
class PanopticFrame:
    """Result of one pipeline step, at the original (camera) resolution.

    segment_map:  [H, W] int32, segment id per pixel (0 = void)
    semantic:     [H, W] uint8, train id per pixel (255 = void)
    instance_ids: [H, W] uint16, track id per pixel (0 = none)
    panoptic:     [H, W] int32, semantic * label_divisor + track id (void = 255 * divisor)
    """

    segment_map: np.ndarray
    semantic: np.ndarray
    instance_ids: np.ndarray
    panoptic: np.ndarray
    segments: list[Segment] = field(default_factory=list)
    label_divisor: int = 1000
