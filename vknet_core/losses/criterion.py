"""Video K-Net training losses for one key + reference pair (video_knet.md §5).

B batch, Q thing kernels, N = Q + stuff kernels, K classes (things first), h x w stride-8 maps,
H2 x W2 = 4h x 4w stride-2 maps (masks are upsampled x4 for assignment and losses).

    criterion = VideoKNetCriterion(cfg)                      # cfg: VKNetConfig
    out_ref = model.forward_train(ref, *model.initial_state(B))
    out_key = model.forward_train(key, out_ref.frame.cur_kernels, ones)
    losses = criterion(out_key, out_ref, targets_key, targets_ref)   # dict, already weighted
    loss = sum(losses.values())

Per frame: RPN (mask BCE, dice, rank, softmax semantic CE) and, per stage s, sigmoid focal
classification + mask BCE + dice, with stage s assigned from stage s-1's detached predictions
(the RPN masks, without class cost, for s = 0). The reference frame gets the same losses with a
``_ref`` suffix. Tracking: multi-positive CE + cosine L2 aux between the key frame's and the
reference frame's matched thing kernels (assigned with each frame's final-stage predictions).

Normalisers that count positives (the focal ``avg_factor``, the number of positive masks) pass
through ``reduce_mean`` so that under DDP they are averaged over ranks (as mmdet's
``reduce_mean``): the mean over ranks of the per-rank loss then equals the loss of one process
that sees the whole global batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.config import VKNetConfig
from vknet_core.losses.mask_losses import (
    DICE_EPS, FOCAL_ALPHA, FOCAL_GAMMA, dice_loss, mask_bce, sigmoid_focal_loss)
from vknet_core.losses.matcher import HungarianMatcher, MatchCosts
from vknet_core.losses.track_loss import track_losses
from vknet_core.types import TrainOutputs

Targets = dict[str, Tensor]  # masks [M,H2,W2], labels [M], instance_ids [M], is_thing [M], sem_seg
Assignment = tuple[Tensor, Tensor]  # (kernel indices, gt indices into the thing GTs)


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and constants (official values: video_knet.md §5.5, §5.6)."""

    match_costs: MatchCosts = field(default_factory=MatchCosts)  # focal 2 / mask 1 / dice 4
    focal_alpha: float = FOCAL_ALPHA
    focal_gamma: float = FOCAL_GAMMA
    dice_eps: float = DICE_EPS
    rpn_mask: float = 1.0
    rpn_dice: float = 4.0
    rpn_rank: float = 0.1
    rpn_seg: float = 1.0
    cls: float = 2.0
    mask: float = 1.0
    dice: float = 4.0
    stage_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    track: float = 0.25
    track_aux: float = 1.0
    track_pos_margin: float = 0.0
    track_neg_margin: float = 0.1
    track_neg_pos_ub: float = 3.0
    mask_upsample: int = 4  # stride 8 -> stride 2
    ignore_label: int = 255  # void / padding in ``sem_seg``


def upsample(mask_logits: Tensor, factor: int) -> Tensor:
    """[B, X, h, w] -> [B, X, factor*h, factor*w] bilinear (align_corners=False), float32."""
    return F.interpolate(mask_logits.float(), scale_factor=factor, mode="bilinear",
                         align_corners=False)


def targets_to(targets: Sequence[Targets], device: torch.device) -> list[Targets]:
    """Move every tensor of every target dict to ``device``."""
    return [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()}
            for t in targets]


def rank_targets(pos_masks: Tensor, kernel_idx: Tensor, ignore: int) -> Tensor:
    """Per-pixel index of the kernel whose assigned ground truth covers the pixel.

    pos_masks [m,H,W] soft targets of the matched kernels ``kernel_idx`` [m] (ascending); a pixel
    covered (target > 0) by several gets the highest kernel index, as the official loop that
    writes kernels in order. Uncovered pixels get ``ignore``. Returns [H, W] int64.
    """
    H, W = pos_masks.shape[-2:]
    target = torch.full((H, W), ignore, dtype=torch.long, device=pos_masks.device)
    if kernel_idx.numel() == 0:
        return target
    covered = pos_masks > 0  # [m, H, W]
    order = torch.argsort(kernel_idx)
    covered, kidx = covered[order], kernel_idx[order]
    last = (covered * torch.arange(1, len(kidx) + 1, device=kidx.device)[:, None, None]).amax(0)
    hit = last > 0
    target[hit] = kidx[last[hit] - 1]
    return target


class VideoKNetCriterion:
    """Computes the weighted loss dict; see the module docstring."""

    def __init__(self, cfg: VKNetConfig, loss_cfg: LossConfig = LossConfig(),
                 reduce_mean: Optional[Callable[[Tensor], Tensor]] = None):
        self.cfg, self.lc = cfg, loss_cfg
        self.Q = cfg.head.num_thing_kernels
        self.K = cfg.labels.num_classes
        self.num_things = cfg.labels.num_things
        if len(loss_cfg.stage_weights) < cfg.head.num_stages:
            raise ValueError(f"LossConfig.stage_weights has {len(loss_cfg.stage_weights)} "
                             f"entries, expected >= num_stages={cfg.head.num_stages}")
        self.matcher = HungarianMatcher(loss_cfg.match_costs)
        self.reduce_mean = reduce_mean or (lambda t: t)

    # ------------------------------------------------------------------ targets per image

    def _check_targets(self, t: Targets, size: tuple[int, int], name: str) -> None:
        for key in ("masks", "labels", "instance_ids", "is_thing", "sem_seg"):
            if key not in t:
                raise KeyError(f"{name} is missing {key!r}; got keys {sorted(t)}")
        if tuple(t["masks"].shape[-2:]) != size or tuple(t["sem_seg"].shape[-2:]) != size:
            raise ValueError(
                f"{name}: masks {tuple(t['masks'].shape)} and sem_seg "
                f"{tuple(t['sem_seg'].shape)} must be at stride 2 of the input, i.e. {size}")

    def _stage_targets(self, t: Targets, assign: Assignment, device: torch.device
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Class targets for all N kernels of one image (video_knet.md §5.4).

        Returns labels [N] (K = background), label weights [N, K], positive kernel indices [p]
        and their mask targets [p, H2, W2].
        """
        Q, K, nt = self.Q, self.K, self.num_things
        N = Q + (K - nt)
        is_thing = t["is_thing"]
        thing_masks, thing_labels = t["masks"][is_thing], t["labels"][is_thing]
        stuff_masks, stuff_labels = t["masks"][~is_thing], t["labels"][~is_thing]
        labels = torch.full((N,), K, dtype=torch.long, device=device)
        weights = torch.zeros(N, K, device=device)
        weights[:Q, :nt] = 1.0  # thing kernels: thing columns only
        stuff_rows = torch.arange(Q, N, device=device)
        weights[stuff_rows, torch.arange(nt, K, device=device)] = 1.0  # own column only
        k_idx, g_idx = assign
        labels[k_idx] = thing_labels[g_idx]
        stuff_kernel = stuff_labels - nt + Q  # kernel of stuff class c is Q + c - nt
        labels[stuff_kernel] = stuff_labels
        pos = torch.cat([k_idx, stuff_kernel])
        pos_masks = torch.cat([thing_masks[g_idx], stuff_masks]).float()
        return labels, weights, pos, pos_masks

    # ------------------------------------------------------------------ one frame

    def assign(self, out: TrainOutputs, targets: Sequence[Targets]) -> dict[str, list[Assignment]]:
        """All Hungarian assignments of one frame (detached predictions, stride 2).

        Keys: "rpn" (RPN masks, no class cost; also stage 0's assignment), "s1".."s{S-1}"
        (from stage s-1's masks and scores) and "final" (last stage, for tracking).
        """
        f = self.lc.mask_upsample
        Q = self.Q
        S = len(out.stage_mask_logits)
        with torch.no_grad():
            rpn = upsample(out.rpn_mask_logits.detach(), f)
            stage_masks = [upsample(m[:, :Q].detach(), f) for m in out.stage_mask_logits]
        result: dict[str, list[Assignment]] = {"rpn": []}
        for s in range(1, S):
            result[f"s{s}"] = []
        result["final"] = []
        for b, t in enumerate(targets):
            th = t["is_thing"]
            gm, gl = t["masks"][th], t["labels"][th]
            result["rpn"].append(self.matcher(rpn[b], gm))
            for s in range(1, S + 1):  # s == S: the final stage (tracking)
                cls = out.stage_cls_logits[s - 1][b, :Q].detach()
                a = self.matcher(stage_masks[s - 1][b], gm, cls, gl)
                result["final" if s == S else f"s{s}"].append(a)
        return result

    def frame_losses(self, out: TrainOutputs, targets: Sequence[Targets], suffix: str = ""
                     ) -> tuple[dict[str, Tensor], dict[str, list[Assignment]]]:
        """Segmentation losses of one frame (weighted) and its assignments."""
        lc, Q = self.lc, self.Q
        B, _, h, w = out.rpn_mask_logits.shape
        size = (h * lc.mask_upsample, w * lc.mask_upsample)
        if len(targets) != B:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {B}")
        for b, t in enumerate(targets):
            self._check_targets(t, size, f"targets[{b}]")
        device = out.rpn_mask_logits.device
        targets = targets_to(targets, device)
        assigns = self.assign(out, targets)
        S = len(out.stage_mask_logits)

        # Stage targets (stage 0 uses the RPN assignment).
        stage_t = []
        for s in range(S):
            a_s = assigns["rpn"] if s == 0 else assigns[f"s{s}"]
            stage_t.append([self._stage_targets(t, a_s[b], device)
                            for b, t in enumerate(targets)])
        # Positive counts, averaged over ranks in one call: [rpn, s0, s1, ...].
        counts = torch.tensor(
            [float(sum(len(a[0]) for a in assigns["rpn"]))]
            + [float(sum(len(x[2]) for x in st)) for st in stage_t], device=device)
        counts = self.reduce_mean(counts).clamp(min=1.0)

        losses: dict[str, Tensor] = {}
        zero = out.rpn_mask_logits.sum() * 0.0
        # ---- RPN: mask BCE, dice, rank over the Q thing masks, semantic CE
        rpn = upsample(out.rpn_mask_logits, lc.mask_upsample)  # [B, Q, H2, W2]
        bce, dice = zero, zero
        rank_t = []
        for b, t in enumerate(targets):
            k_idx, g_idx = assigns["rpn"][b]
            gm = t["masks"][t["is_thing"]][g_idx].float()
            if len(k_idx):
                pred = rpn[b, k_idx].flatten(1)
                bce = bce + mask_bce(pred, gm.flatten(1)).sum()
                dice = dice + dice_loss(pred, gm.flatten(1), lc.dice_eps).sum()
            rank_t.append(rank_targets(gm, k_idx, lc.ignore_label))
        losses["loss_rpn_mask"] = lc.rpn_mask * bce / counts[0]
        losses["loss_rpn_dice"] = lc.rpn_dice * dice / counts[0]
        rank = F.cross_entropy(rpn, torch.stack(rank_t), ignore_index=lc.ignore_label,
                               reduction="none")  # [B, H2, W2]; ignored pixels count as 0
        losses["loss_rpn_rank"] = lc.rpn_rank * rank.mean()
        sem = upsample(out.frame.sem_logits, lc.mask_upsample)  # [B, K, H2, W2]
        sem_t = torch.stack([t["sem_seg"].long() for t in targets])
        seg = F.cross_entropy(sem, sem_t, ignore_index=lc.ignore_label, reduction="none")
        losses["loss_rpn_seg"] = lc.rpn_seg * seg.mean()

        # ---- stages: focal cls over all N kernels, BCE + dice over positives
        for s in range(S):
            cls_logits = out.stage_cls_logits[s].float()  # [B, N, K]
            masks = upsample(out.stage_mask_logits[s], lc.mask_upsample)  # [B, N, H2, W2]
            focal, bce, dice = zero, zero, zero
            for b in range(B):
                labels, weights, pos, pos_masks = stage_t[s][b]
                onehot = F.one_hot(labels, self.K + 1)[:, : self.K].float()  # bg -> zeros
                focal = focal + (sigmoid_focal_loss(cls_logits[b], onehot, lc.focal_alpha,
                                                    lc.focal_gamma) * weights).sum()
                if len(pos):
                    pred = masks[b, pos].flatten(1)
                    bce = bce + mask_bce(pred, pos_masks.flatten(1)).sum()
                    dice = dice + dice_loss(pred, pos_masks.flatten(1), lc.dice_eps).sum()
            sw = lc.stage_weights[s]
            losses[f"loss_cls_s{s}"] = sw * lc.cls * focal / counts[s + 1]
            losses[f"loss_mask_s{s}"] = sw * lc.mask * bce / counts[s + 1]
            losses[f"loss_dice_s{s}"] = sw * lc.dice * dice / counts[s + 1]
        return {k + suffix: v for k, v in losses.items()}, assigns

    # ------------------------------------------------------------------ key + reference

    def __call__(self, out_key: TrainOutputs, out_ref: TrainOutputs,
                 targets_key: Sequence[Targets], targets_ref: Sequence[Targets]
                 ) -> dict[str, Tensor]:
        """Weighted losses of a key/reference pair; the total loss is the sum of the values."""
        lc, B = self.lc, len(targets_key)
        device = out_key.frame.track_embed.device
        targets_key, targets_ref = targets_to(targets_key, device), targets_to(targets_ref, device)
        losses, a_key = self.frame_losses(out_key, targets_key)
        losses_ref, a_ref = self.frame_losses(out_ref, targets_ref, "_ref")
        losses.update(losses_ref)
        track = aux = out_key.frame.track_embed.sum() * 0.0
        for b in range(B):
            (kk, kg), (rk, rg) = a_key["final"][b], a_ref["final"][b]
            tk, tr = targets_key[b], targets_ref[b]
            key_ids = tk["instance_ids"][tk["is_thing"]][kg]
            ref_ids = tr["instance_ids"][tr["is_thing"]][rg]
            lt, la = track_losses(
                out_key.frame.track_embed[b, kk], out_ref.frame.track_embed[b, rk],
                key_ids, ref_ids,
                lc.track_pos_margin, lc.track_neg_margin, lc.track_neg_pos_ub)
            track, aux = track + lt, aux + la
        losses["loss_track"] = lc.track * track / max(B, 1)
        losses["loss_track_aux"] = lc.track_aux * aux / max(B, 1)
        return losses
