"""Hungarian assignment of thing kernels to thing ground truths (video_knet.md §5.2).

cost = 2 * focal (skipped without class scores, e.g. for the RPN masks) + 1 * mask + 4 * dice,
solved per image with scipy's ``linear_sum_assignment`` on the CPU in float32. Q thing kernels,
M ground-truth thing masks, P pixels (stride 2), K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from vknet_core.losses.mask_losses import dice_cost, focal_cost, mask_cost


@dataclass(frozen=True)
class MatchCosts:
    cls: float = 2.0
    mask: float = 1.0
    dice: float = 4.0


class HungarianMatcher:
    """Minimum-cost one-to-one assignment; unmatched kernels are background."""

    def __init__(self, costs: MatchCosts = MatchCosts()):
        self.costs = costs

    @torch.no_grad()
    def cost_matrix(
        self,
        mask_logits: Tensor,
        gt_masks: Tensor,
        cls_logits: Optional[Tensor] = None,
        gt_labels: Optional[Tensor] = None,
    ) -> Tensor:
        """One image: mask_logits [Q,H,W], gt_masks [M,H,W] soft, cls_logits [Q,K] or None,
        gt_labels [M] (model labels) -> cost [Q, M] float32."""
        return self.batched_cost(
            mask_logits[None].flatten(2),
            gt_masks[None].flatten(2),
            None if cls_logits is None else cls_logits[None],
            None if gt_labels is None else gt_labels[None],
        )[0]

    @torch.no_grad()
    def batched_cost(
        self,
        pred: Tensor,
        gt: Tensor,
        cls_logits: Optional[Tensor] = None,
        gt_labels: Optional[Tensor] = None,
    ) -> Tensor:
        """pred [B,Q,P] logits, gt [B,M,P] soft, cls_logits [B,Q,K] or None, gt_labels [B,M]
        -> cost [B, Q, M] float32."""
        pred, gt = pred.detach().float(), gt.detach().float()
        if pred.shape[-1] != gt.shape[-1]:
            raise ValueError(
                f"predicted masks {tuple(pred.shape)} and ground truth {tuple(gt.shape)} "
                "must have the same spatial size"
            )
        cost = self.costs.mask * mask_cost(pred, gt) + self.costs.dice * dice_cost(pred, gt)
        if cls_logits is not None and self.costs.cls != 0:
            if gt_labels is None:
                raise ValueError("gt_labels are required when cls_logits are given")
            cost = cost + self.costs.cls * focal_cost(cls_logits.detach().float(), gt_labels)
        return cost

    @torch.no_grad()
    def __call__(
        self,
        mask_logits: Tensor,
        gt_masks: Tensor,
        cls_logits: Optional[Tensor] = None,
        gt_labels: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        """One image. Returns (pred_idx [m], gt_idx [m]) int64 on the CPU, m = min(Q, M),
        sorted by pred_idx."""
        return self.match_batch(
            mask_logits[None],
            [gt_masks],
            None if cls_logits is None else cls_logits[None],
            None if gt_labels is None else [gt_labels],
        )[0]

    @torch.no_grad()
    def match_batch(
        self,
        mask_logits: Tensor,
        gt_masks: Sequence[Tensor],
        cls_logits: Optional[Tensor] = None,
        gt_labels: Optional[Sequence[Tensor]] = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """B images at once: one cost computation and one device->host copy for the batch.

        mask_logits [B,Q,H,W] or [B,Q,P]; gt_masks: B tensors [M_b,H,W] or [M_b,P];
        cls_logits [B,Q,K] or None; gt_labels: B tensors [M_b]. Returns per image
        (pred_idx, gt_idx) int64 CPU tensors, sorted by pred_idx.
        """
        B, Q = mask_logits.shape[:2]
        if len(gt_masks) != B:
            raise ValueError(f"got {len(gt_masks)} ground-truth sets for {B} images")
        sizes = [int(g.shape[0]) for g in gt_masks]
        empty = torch.zeros(0, dtype=torch.long)
        if sum(sizes) == 0 or Q == 0:
            return [(empty, empty.clone()) for _ in range(B)]
        M = max(sizes)
        pred = mask_logits.detach().float().flatten(2)  # [B, Q, P]
        for g in gt_masks:
            if g.shape[1:].numel() != pred.shape[-1]:
                raise ValueError(
                    f"predicted masks {tuple(mask_logits.shape)} and ground truth "
                    f"{tuple(g.shape)} must have the same spatial size"
                )
        gt = pred.new_zeros(B, M, pred.shape[-1])  # padded with empty masks
        for b, g in enumerate(gt_masks):
            gt[b, : sizes[b]] = g.to(pred.device).flatten(1)
        labels = None
        if cls_logits is not None:
            if gt_labels is None:
                raise ValueError("gt_labels are required when cls_logits are given")
            labels = torch.zeros(B, M, dtype=torch.long)
            for b, lab in enumerate(gt_labels):
                labels[b, : sizes[b]] = lab.cpu()
            labels = labels.to(pred.device)
        cost = self.batched_cost(pred, gt, cls_logits, labels).cpu().numpy()  # [B, Q, M]
        if not np.isfinite(cost).all():
            raise FloatingPointError("non-finite Hungarian matching cost (non-finite predictions)")
        result = []
        for b, m in enumerate(sizes):
            if m == 0:
                result.append((empty, empty.clone()))
                continue
            rows, cols = linear_sum_assignment(cost[b, :, :m])
            result.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        return result
