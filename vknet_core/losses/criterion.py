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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.config import VKNetConfig
from vknet_core.losses.mask_losses import (
    DICE_EPS,
    FOCAL_ALPHA,
    FOCAL_GAMMA,
    dice_loss,
    mask_bce,
    sigmoid_focal_loss,
)
from vknet_core.losses.matcher import HungarianMatcher, MatchCosts
from vknet_core.losses.track_loss import track_losses
from vknet_core.types import TrainOutputs

Targets = dict[str, Tensor]  # masks [M,H2,W2], labels [M], instance_ids [M], is_thing [M], sem_seg
Assignment = tuple[Tensor, Tensor]  # CPU (kernel indices, indices into the thing GTs)


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
    return F.interpolate(
        mask_logits.float(), scale_factor=factor, mode="bilinear", align_corners=False
    )


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

    def __init__(
        self,
        cfg: VKNetConfig,
        loss_cfg: LossConfig = LossConfig(),
        reduce_mean: Optional[Callable[[Tensor], Tensor]] = None,
    ):
        self.cfg, self.lc = cfg, loss_cfg
        self.Q = cfg.head.num_thing_kernels
        self.K = cfg.labels.num_classes
        self.num_things = cfg.labels.num_things
        if len(loss_cfg.stage_weights) < cfg.head.num_stages:
            raise ValueError(
                f"LossConfig.stage_weights has {len(loss_cfg.stage_weights)} "
                f"entries, expected >= num_stages={cfg.head.num_stages}"
            )
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
                f"{tuple(t['sem_seg'].shape)} must be at stride 2 of the input, i.e. {size}"
            )

    def label_weights(self, device: torch.device) -> Tensor:
        """[N, K] focal weights (video_knet.md §5.4): thing kernels on the thing columns only,
        stuff kernel j on its own column (model label num_things + j) only."""
        Q, K, nt = self.Q, self.K, self.num_things
        weights = torch.zeros(Q + K - nt, K, device=device)
        weights[:Q, :nt] = 1.0
        weights[torch.arange(Q, Q + K - nt), torch.arange(nt, K)] = 1.0
        return weights

    def stage_targets(
        self, meta: Sequence[dict[str, Tensor]], assign: Sequence[Assignment]
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """Class and mask targets of all N kernels of every image (video_knet.md §5.4), on CPU.

        Returns labels [B, N] (K = background), the positives' image indices [p] and kernel
        indices [p], and per image the rows of its target ``masks`` for its positives.
        """
        Q, K, nt = self.Q, self.K, self.num_things
        labels = torch.full((len(meta), Q + K - nt), K, dtype=torch.long)
        b_idx, k_idx, rows = [], [], []
        for b, (m, (kk, gg)) in enumerate(zip(meta, assign)):
            thing_rows = m["thing_rows"][gg]  # rows of the matched GTs in t["masks"]
            stuff_rows = m["stuff_rows"]
            stuff_kernel = m["labels"][stuff_rows] - nt + Q  # stuff class c -> kernel Q + c - nt
            labels[b, kk] = m["labels"][thing_rows]
            labels[b, stuff_kernel] = m["labels"][stuff_rows]
            pos = torch.cat([kk, stuff_kernel])
            b_idx.append(torch.full_like(pos, b))
            k_idx.append(pos)
            rows.append(torch.cat([thing_rows, stuff_rows]))
        return labels, torch.cat(b_idx), torch.cat(k_idx), rows

    # ------------------------------------------------------------------ one frame

    def assign(
        self,
        out: TrainOutputs,
        targets: Sequence[Targets],
        meta: Optional[Sequence[dict[str, Tensor]]] = None,
    ) -> dict[str, list[Assignment]]:
        """All Hungarian assignments of one frame (detached predictions, stride 2), CPU indices.

        Keys: "rpn" (RPN masks, no class cost; also stage 0's assignment), "s1".."s{S-1}"
        (from stage s-1's masks and scores) and "final" (last stage, for tracking).
        """
        f, Q = self.lc.mask_upsample, self.Q
        S = len(out.stage_mask_logits)
        meta = meta if meta is not None else [self._meta(t) for t in targets]
        gm = [t["masks"][m["thing_rows"].to(t["masks"].device)] for t, m in zip(targets, meta)]
        gl = [m["labels"][m["thing_rows"]] for m in meta]
        with torch.no_grad():
            result = {
                "rpn": self.matcher.match_batch(upsample(out.rpn_mask_logits.detach(), f), gm)
            }
            for s in range(1, S + 1):  # s == S: the final stage (tracking)
                masks = upsample(out.stage_mask_logits[s - 1][:, :Q].detach(), f)
                cls = out.stage_cls_logits[s - 1][:, :Q].detach()
                result["final" if s == S else f"s{s}"] = self.matcher.match_batch(
                    masks, gm, cls, gl
                )
        return result

    @staticmethod
    def _meta(t: Targets) -> dict[str, Tensor]:
        """Small per-image label tensors on the CPU (no device sync in the index bookkeeping)."""
        is_thing = t["is_thing"].cpu().bool()
        return {
            "labels": t["labels"].cpu().long(),
            "instance_ids": t["instance_ids"].cpu(),
            "thing_rows": is_thing.nonzero().squeeze(1),
            "stuff_rows": (~is_thing).nonzero().squeeze(1),
        }

    def frame_losses(
        self, out: TrainOutputs, targets: Sequence[Targets], suffix: str = ""
    ) -> tuple[dict[str, Tensor], dict[str, list[Assignment]]]:
        """Segmentation losses of one frame (weighted) and its assignments."""
        lc, f = self.lc, self.lc.mask_upsample
        B, _, h, w = out.rpn_mask_logits.shape
        size = (h * f, w * f)
        if len(targets) != B:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {B}")
        for b, t in enumerate(targets):
            self._check_targets(t, size, f"targets[{b}]")
        device = out.rpn_mask_logits.device
        meta = [self._meta(t) for t in targets]
        masks_dev = [t["masks"].to(device).float() for t in targets]
        assigns = self.assign(out, [{"masks": m} for m in masks_dev], meta)
        S = len(out.stage_mask_logits)

        # Stage targets (stage 0 uses the RPN assignment), built on the CPU.
        stage_t = [
            self.stage_targets(meta, assigns["rpn"] if s == 0 else assigns[f"s{s}"])
            for s in range(S)
        ]
        # Positive counts, averaged over ranks in one call: [rpn, s0, s1, ...].
        counts = torch.tensor(
            [float(sum(len(a[0]) for a in assigns["rpn"]))] + [float(len(st[2])) for st in stage_t]
        )
        counts = self.reduce_mean(counts.to(device)).clamp(min=1.0)

        def gather_targets(rows: Sequence[Tensor]) -> Tensor:  # -> [p, H2, W2]
            return torch.cat([m[r.to(device)] for m, r in zip(masks_dev, rows)])

        losses: dict[str, Tensor] = {}
        # ---- RPN: mask BCE, dice, rank over the Q thing masks, semantic CE
        rpn = upsample(out.rpn_mask_logits, f)  # [B, Q, H2, W2]
        kk = torch.cat([a[0] for a in assigns["rpn"]])
        bb = torch.cat([torch.full_like(a[0], b) for b, a in enumerate(assigns["rpn"])])
        thing_rows = [m["thing_rows"][a[1]] for m, a in zip(meta, assigns["rpn"])]
        gt = gather_targets(thing_rows).flatten(1)  # [p, H2*W2]
        pred = rpn[bb.to(device), kk.to(device)].flatten(1)  # [p, H2*W2]
        losses["loss_rpn_mask"] = lc.rpn_mask * mask_bce(pred, gt).sum() / counts[0]
        losses["loss_rpn_dice"] = lc.rpn_dice * dice_loss(pred, gt, lc.dice_eps).sum() / counts[0]
        rank_t = torch.stack(
            [
                rank_targets(masks_dev[b][r.to(device)], a[0].to(device), lc.ignore_label)
                for b, (r, a) in enumerate(zip(thing_rows, assigns["rpn"]))
            ]
        )
        rank = F.cross_entropy(
            rpn, rank_t, ignore_index=lc.ignore_label, reduction="none"
        )  # [B, H2, W2]; ignored pixels count as 0
        losses["loss_rpn_rank"] = lc.rpn_rank * rank.mean()
        sem = upsample(out.frame.sem_logits, f)  # [B, K, H2, W2]
        sem_t = torch.stack([t["sem_seg"] for t in targets]).to(device).long()
        seg = F.cross_entropy(sem, sem_t, ignore_index=lc.ignore_label, reduction="none")
        losses["loss_rpn_seg"] = lc.rpn_seg * seg.mean()

        # ---- stages: focal cls over all N kernels, BCE + dice over positives
        weights = self.label_weights(device)  # [N, K]
        for s in range(S):
            labels, bb, kk, rows = stage_t[s]
            onehot = F.one_hot(labels.to(device), self.K + 1)[..., : self.K].float()  # [B,N,K]
            focal = (
                sigmoid_focal_loss(out.stage_cls_logits[s], onehot, lc.focal_alpha, lc.focal_gamma)
                * weights
            ).sum()
            # upsample only the positives' masks (bilinear resizing is per channel)
            pred = upsample(out.stage_mask_logits[s][bb.to(device), kk.to(device)][None], f)[0]
            pred, gt = pred.flatten(1), gather_targets(rows).flatten(1)  # [p, H2*W2]
            sw = lc.stage_weights[s]
            losses[f"loss_cls_s{s}"] = sw * lc.cls * focal / counts[s + 1]
            losses[f"loss_mask_s{s}"] = sw * lc.mask * mask_bce(pred, gt).sum() / counts[s + 1]
            losses[f"loss_dice_s{s}"] = (
                sw * lc.dice * dice_loss(pred, gt, lc.dice_eps).sum() / counts[s + 1]
            )
        return {k + suffix: v for k, v in losses.items()}, assigns

    # ------------------------------------------------------------------ key + reference

    def __call__(
        self,
        out_key: TrainOutputs,
        out_ref: TrainOutputs,
        targets_key: Sequence[Targets],
        targets_ref: Sequence[Targets],
    ) -> dict[str, Tensor]:
        """Weighted losses of a key/reference pair; the total loss is the sum of the values."""
        lc, B = self.lc, len(targets_key)
        losses, a_key = self.frame_losses(out_key, targets_key)
        losses_ref, a_ref = self.frame_losses(out_ref, targets_ref, "_ref")
        losses.update(losses_ref)
        device = out_key.frame.track_embed.device
        track = aux = out_key.frame.track_embed.sum() * 0.0
        for b in range(B):
            (kk, kg), (rk, rg) = a_key["final"][b], a_ref["final"][b]
            mk, mr = self._meta(targets_key[b]), self._meta(targets_ref[b])
            key_ids = mk["instance_ids"][mk["thing_rows"][kg]]
            ref_ids = mr["instance_ids"][mr["thing_rows"][rg]]
            lt, la = track_losses(
                out_key.frame.track_embed[b, kk.to(device)],
                out_ref.frame.track_embed[b, rk.to(device)],
                key_ids,
                ref_ids,
                lc.track_pos_margin,
                lc.track_neg_margin,
                lc.track_neg_pos_ub,
            )
            track, aux = track + lt, aux + la
        losses["loss_track"] = lc.track * track / max(B, 1)
        losses["loss_track_aux"] = lc.track_aux * aux / max(B, 1)
        return losses
