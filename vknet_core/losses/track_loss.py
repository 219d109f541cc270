"""Kernel association losses (QDTrack losses as used by Video K-Net; video_knet.md §5.6).

n key embeddings (matched thing kernels of the key frame) vs m reference embeddings (matched
thing kernels of the reference frame), E channels. ``targets[i, j] = 1`` iff both kernels were
matched to the same ground-truth instance id.

    multi_pos_cross_entropy(dots [n,m], targets [n,m]) -> scalar  (raw dot products)
    l2_aux_loss(cosines [n,m], targets [n,m])          -> scalar  (margins, hard-negative mining)
    track_losses(key_embed, ref_embed, key_ids, ref_ids) -> (loss_track, loss_track_aux)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multi_pos_cross_entropy(dots: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows with a positive of log(1 + Σ_{k∈pos} Σ_{j∈neg} exp(s_ij − s_ik)).

    Computed as a logsumexp over all (neg j, pos k) pairs plus a 0 entry (QDTrack).
    dots: [n, m] float similarities, targets: [n, m] 0/1. Returns 0 when no row has a positive.
    """
    dots, pos = dots.float(), targets.bool()
    n, m = dots.shape
    weight = pos.any(dim=1).float()  # [n] rows with any positive
    if n == 0 or weight.sum() == 0:
        return dots.sum() * 0.0
    # s_ij - s_ik for every (negative j, positive k) pair of row i; other pairs -> -inf
    valid = (~pos)[:, :, None] & pos[:, None, :]  # [n, m(neg j), m(pos k)]
    diff = dots[:, :, None] - dots[:, None, :]
    diff = diff.masked_fill(~valid, float("-inf")).flatten(1)  # [n, m*m]
    diff = F.pad(diff, (0, 1), value=0.0)  # the "1 +" term
    loss = torch.logsumexp(diff, dim=1)  # [n]
    return (loss * weight).sum() / weight.sum()


def l2_aux_loss(
    cosines: Tensor,
    targets: Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 0.1,
    neg_pos_ub: float = 3.0,
) -> Tensor:
    """QDTrack ``L2Loss`` with hard mining: margins, clamp to [0,1], squared error to 1/0.

    If #neg / #pos > neg_pos_ub, only the neg_pos_ub·#pos negatives with the largest error are
    kept. Mean over the kept entries; 0 when nothing is kept.
    cosines: [n, m] cosine similarities, targets: [n, m] 0/1.
    """
    pred, t = cosines.float(), targets.float()
    pos, neg = t == 1, t == 0
    pred = torch.where(pos, pred - pos_margin, pred)
    pred = torch.where(neg, pred - neg_margin, pred)
    pred = pred.clamp(0.0, 1.0)
    err = (pred - t) ** 2  # [n, m]
    keep = pos | neg
    num_pos, num_neg = int(pos.sum()), int(neg.sum())
    if neg_pos_ub > 0 and num_neg / (num_pos + 1e-6) > neg_pos_ub:
        k = int(num_pos * neg_pos_ub)
        neg_idx = neg.flatten().nonzero().squeeze(1)
        hard = err.detach().flatten()[neg_idx].topk(k).indices
        keep_neg = torch.zeros_like(neg.flatten())
        keep_neg[neg_idx[hard]] = True
        keep = pos | keep_neg.view_as(neg)
    if keep.sum() == 0:
        return cosines.sum() * 0.0
    return (err * keep).sum() / keep.sum()


def track_losses(
    key_embed: Tensor,
    ref_embed: Tensor,
    key_ids: Tensor,
    ref_ids: Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 0.1,
    neg_pos_ub: float = 3.0,
) -> tuple[Tensor, Tensor]:
    """key_embed [n,E], ref_embed [m,E], key_ids [n], ref_ids [m] instance ids ->
    (multi-positive CE on dot products, L2 aux on cosines), both unweighted scalars."""
    targets = (key_ids[:, None] == ref_ids[None, :]).float().to(key_embed.device)  # [n, m]
    dots = key_embed.float() @ ref_embed.float().t()  # raw dot products (softmax_temp=-1)
    cos = F.normalize(key_embed.float(), dim=1) @ F.normalize(ref_embed.float(), dim=1).t()
    return (
        multi_pos_cross_entropy(dots, targets),
        l2_aux_loss(cos, targets, pos_margin, neg_margin, neg_pos_ub),
    )
