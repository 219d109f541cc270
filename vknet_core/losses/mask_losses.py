"""Element-wise and pairwise mask/class losses of K-Net (video_knet.md §5.2, §5.5).

Pure functions, no reduction policy: callers decide how to normalise. M masks, P pixels,
N predictions, K classes. All inputs are float logits (sigmoid applied here), computed in float32.

Losses (per element / per mask):
    sigmoid_focal_loss(logits [N,K], targets [N,K]) -> [N,K]
    mask_bce(logits [M,P], targets [M,P])           -> [M]   mean BCE over pixels
    dice_loss(logits [M,P], targets [M,P])          -> [M]   1 - 2Σpt / (Σp²+eps + Σt²+eps)
Pairwise costs for the Hungarian matcher ([N] predictions x [M] ground truths -> [N, M]):
    focal_cost, mask_cost, dice_cost
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
DICE_EPS = 1e-3


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA
) -> Tensor:
    """Sigmoid focal loss per element (mmdet ``sigmoid_focal_loss``), no reduction.

    logits:  [N, K] float class logits
    targets: [N, K] float 0/1 (one-hot of the label; all zeros for background)
    returns: [N, K] float
    """
    logits, targets = logits.float(), targets.float()
    p = logits.sigmoid()
    pt = (1 - p) * targets + p * (1 - targets)  # probability of the wrong answer
    w = (alpha * targets + (1 - alpha) * (1 - targets)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * w


def mask_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """BCE-with-logits against soft targets, mean over pixels: [M, P], [M, P] -> [M]."""
    return F.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), reduction="none"
    ).mean(dim=1)


def dice_loss(logits: Tensor, targets: Tensor, eps: float = DICE_EPS) -> Tensor:
    """Dice loss per mask (mmdet ``DiceLoss``, naive_dice=False): [M, P], [M, P] -> [M]."""
    p, t = logits.float().sigmoid(), targets.float()
    a = (p * t).sum(dim=1)
    b = (p * p).sum(dim=1) + eps
    c = (t * t).sum(dim=1) + eps
    return 1 - 2 * a / (b + c)


def focal_cost(
    logits: Tensor,
    labels: Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    eps: float = 1e-12,
) -> Tensor:
    """mmdet ``FocalLossCost``: [..., N, K] logits, [..., M] labels -> [..., N, M] (unweighted)."""
    p = logits.float().sigmoid()
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)  # [..., N, K]
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)  # [..., N, K]
    idx = labels.long().unsqueeze(-2).expand(*p.shape[:-1], labels.shape[-1])  # [..., N, M]
    return (pos - neg).gather(-1, idx)


def mask_cost(logits: Tensor, targets: Tensor, clamp_min: float = 0.01) -> Tensor:
    """K-Net ``MaskCost`` on clamped probabilities: [..., N, P], [..., M, P] -> [..., N, M].

    cost = -(Σ p·t + Σ (1-p)(1-t)) / P with p = clamp(sigmoid(logit), clamp_min, 1).
    """
    p = logits.float().sigmoid().clamp(min=clamp_min, max=1.0)
    t = targets.float()
    pos = torch.einsum("...np,...mp->...nm", p, t)
    neg = torch.einsum("...np,...mp->...nm", 1 - p, 1 - t)
    return -(pos + neg) / t.shape[-1]


def dice_cost(
    logits: Tensor, targets: Tensor, eps: float = DICE_EPS, clamp_min: float = 0.001
) -> Tensor:
    """K-Net ``DiceCost`` (constant 1 dropped): [..., N, P], [..., M, P] -> [..., N, M].

    cost = -2 Σ p·t / (Σ p² + Σ t² + 2·eps) with p = clamp(sigmoid(logit), clamp_min, 1).
    """
    p = logits.float().sigmoid().clamp(min=clamp_min, max=1.0)
    t = targets.float()
    num = 2 * torch.einsum("...np,...mp->...nm", p, t)
    den = (p * p).sum(-1)[..., :, None] + (t * t).sum(-1)[..., None, :] + 2 * eps
    return -num / den
