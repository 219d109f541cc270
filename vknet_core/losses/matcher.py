"""Hungarian assignment of thing kernels to thing ground truths (video_knet.md §5.2).

cost = 2 * focal (skipped without class scores, e.g. for the RPN masks) + 1 * mask + 4 * dice,
solved per image with scipy's ``linear_sum_assignment`` on the CPU in float32. Q thing kernels,
M ground-truth thing masks, P pixels (stride 2), K classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
    def cost_matrix(self, mask_logits: Tensor, gt_masks: Tensor,
                    cls_logits: Optional[Tensor] = None,
                    gt_labels: Optional[Tensor] = None) -> Tensor:
        """mask_logits [Q,H,W] or [Q,P], gt_masks [M,H,W] or [M,P] soft, cls_logits [Q,K] or None,
        gt_labels [M] (model labels) -> cost [Q, M] float32."""
        pred = mask_logits.detach().float().flatten(1)  # [Q, P]
        gt = gt_masks.detach().float().flatten(1)  # [M, P]
        if pred.shape[1] != gt.shape[1]:
            raise ValueError(
                f"predicted masks {tuple(mask_logits.shape)} and ground truth "
                f"{tuple(gt_masks.shape)} must have the same spatial size")
        cost = self.costs.mask * mask_cost(pred, gt) + self.costs.dice * dice_cost(pred, gt)
        if cls_logits is not None and self.costs.cls != 0:
            if gt_labels is None:
                raise ValueError("gt_labels are required when cls_logits are given")
            cost = cost + self.costs.cls * focal_cost(cls_logits.detach().float(), gt_labels)
        return cost

    @torch.no_grad()
    def __call__(self, mask_logits: Tensor, gt_masks: Tensor,
                 cls_logits: Optional[Tensor] = None,
                 gt_labels: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Returns (pred_idx [m], gt_idx [m]) int64 on the predictions' device, m = min(Q, M),
        sorted by pred_idx."""
        device = mask_logits.device
        if gt_masks.shape[0] == 0 or mask_logits.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        cost = self.cost_matrix(mask_logits, gt_masks, cls_logits, gt_labels)
        if not torch.isfinite(cost).all():
            raise FloatingPointError(f"non-finite matching cost: {cost}")
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        return (torch.as_tensor(rows, dtype=torch.long, device=device),
                torch.as_tensor(cols, dtype=torch.long, device=device))
