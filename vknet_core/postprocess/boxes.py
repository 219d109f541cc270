"""Tracker boxes from thing segments with the semantic filter (video_knet.md §7.3).

K classes (T things first), h x w semantic logits (stride 8 of the padded input), H x W camera.
A box is the tight box of (segment AND semantic-thing) pixels as (x1, y1, x2, y2) inclusive pixel
coordinates; an empty set gives the official placeholder (-1, -1, 10, 10). Boxes only feed the
tracker's duplicate and backdrop logic.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.preprocess import Letterbox

EMPTY_BOX: tuple[float, float, float, float] = (-1.0, -1.0, 10.0, 10.0)


def semantic_thing_mask(sem_logits: Tensor, out_hw: tuple[int, int], num_things: int,
                        letterbox: Optional[Letterbox] = None) -> Tensor:
    """[H, W] bool: pixels whose semantic arg-max is a thing class.

    sem_logits: Tensor[K, h, w] float. With ``letterbox`` the map goes through the padding crop
    (the correct geometry); without, it is resized straight to ``out_hw`` (the official code).
    """
    x = sem_logits.float()[None]  # [1, K, h, w]
    if letterbox is not None:
        x = letterbox.to_original(x)
    else:
        x = F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False)
    # Official: argmax(sigmoid(x)) < T. The first maximum wins and things come first, so this is
    # max over thing channels >= max over stuff channels; sigmoid is monotonic, so it can be
    # applied after the max (the same saturation ties). Channel-wise maxima stay contiguous.
    x = x[0]  # [K, H, W]
    thing, stuff = x[0].clone(), x[num_things].clone()
    for k in range(1, num_things):
        torch.maximum(thing, x[k], out=thing)
    for k in range(num_things + 1, x.shape[0]):
        torch.maximum(stuff, x[k], out=stuff)
    return thing.sigmoid() >= stuff.sigmoid()


def segment_boxes(segment_map: Tensor, seg_ids: Tensor,
                  keep_pixels: Optional[Tensor] = None) -> Tensor:
    """Tight boxes of segments, vectorised over all pixels at once.

    segment_map: Tensor[H, W] int, segment id per pixel (0 = none)
    seg_ids:     Tensor[n] int, ids whose boxes are wanted
    keep_pixels: Tensor[H, W] bool or None, pixels allowed to count (the semantic filter)
    Returns Tensor[n, 4] float32 (x1, y1, x2, y2), inclusive; EMPTY_BOX where nothing counts.
    """
    H, W = segment_map.shape
    dev = segment_map.device
    n_ids = int(segment_map.max().item()) + 1 if segment_map.numel() else 1
    n_ids = max(n_ids, int(seg_ids.max().item()) + 1 if seg_ids.numel() else 1)
    seg = segment_map.flatten().long()
    ys = torch.arange(H, device=dev).repeat_interleave(W)  # [H*W]
    xs = torch.arange(W, device=dev).repeat(H)
    if keep_pixels is not None:
        sel = keep_pixels.flatten()
        seg, ys, xs = seg[sel], ys[sel], xs[sel]
    big = H + W + 1
    lo = torch.full((2, n_ids), big, dtype=torch.long, device=dev)
    hi = torch.full((2, n_ids), -1, dtype=torch.long, device=dev)
    coords = torch.stack([xs, ys])  # [2, P]
    idx = seg.expand(2, -1)
    lo.scatter_reduce_(1, idx, coords, reduce="amin")
    hi.scatter_reduce_(1, idx, coords, reduce="amax")
    sid = seg_ids.long().to(dev)
    boxes = torch.cat([lo[:, sid], hi[:, sid]]).t().float()  # [n, 4] x1, y1, x2, y2
    empty = hi[0, sid] < 0
    boxes[empty] = torch.tensor(EMPTY_BOX, device=dev)
    return boxes
