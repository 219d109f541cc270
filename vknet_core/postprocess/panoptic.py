"""Official joint panoptic merge of Video K-Net (video_knet.md §7.2), vectorised in torch.

N kernels (Q things first, then one per stuff class), K classes (T things first), M = P + S
candidates (P thing (kernel, class) pairs from the top-k, S stuff kernels), h x w mask logits,
H x W output (camera) size.

The official code visits candidates one by one, but every decision depends only on the
candidate's own owned area (from one global arg-max) and its own "original" area, so the whole
merge is: arg-max -> bincount -> keep mask -> cumulative segment ids -> a lookup table.
Rules kept exactly (parity/README "Official behaviours"): the keep test is ``not (a / o < thr)``
as a float64 division; things under ``instance_score_thr`` and dropped candidates leave their
owned pixels at 0; candidates are visited in descending score over things and stuff together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.preprocess import Letterbox


@dataclass(frozen=True)
class MergeConfig:
    """Merge thresholds (official test cfg) and the output options."""

    max_per_img: int = 100  # thing (kernel, class) candidates kept from the top-k
    instance_score_thr: float = 0.25  # things below are skipped (their pixels stay void)
    overlap_thr: float = 0.6  # keep if owned area / original area >= this
    mask_thr: float = 0.5  # "original area" counts prob >= this
    void_as_road: bool = False  # official export writes unassigned pixels as train id 0
    semantic_filter: bool = True  # tracker boxes use (segment AND semantic-thing) pixels
    semantic_filter_crop: bool = True  # False: official direct resize of the padded map
    chunk: int = 16  # masks rescaled per batch (bounds memory; results do not depend on it)
    windowed: bool = True  # rescale each mask only where it may win or be visible (same result)


@dataclass
class MergeResult:
    """Merge output; S segments in segment order (ids 1..S), all tensors on the merge device.

    segment_map: [H, W] int32, segment id per pixel, 0 = void
    is_thing:    [S] bool
    labels:      [S] int64, model label (things first)
    scores:      [S] float32, candidate score (thing: class prob; stuff: its diagonal prob)
    kernels:     [S] int64, kernel (query) index 0..N-1
    ranks:       [S] int64, candidate index: rank in the thing top-k, or P + stuff sort rank
    areas:       [S] int64, pixel count
    """

    segment_map: Tensor
    is_thing: Tensor
    labels: Tensor
    scores: Tensor
    kernels: Tensor
    ranks: Tensor
    areas: Tensor

    @property
    def num_segments(self) -> int:
        return int(self.labels.numel())

    @property
    def thing_segments(self) -> Tensor:
        """[n] int64 positions (0-based) of the thing segments, in segment order."""
        return torch.nonzero(self.is_thing).flatten()

    def official_segments(self, num_things: int, num_thing_kernels: int) -> np.ndarray:
        """[S, 6] int64 rows ``id, isthing, category_id, instance_id, query_index, area`` as the
        official ``segments_info`` (things: category = label, instance = top-k rank; stuff:
        category = label - T + 1, instance = -1)."""
        th = self.is_thing.cpu().numpy()
        lab = self.labels.cpu().numpy()
        out = np.zeros((self.num_segments, 6), np.int64)
        out[:, 0] = np.arange(1, self.num_segments + 1)
        out[:, 1] = th
        out[:, 2] = np.where(th, lab, lab - num_things + 1)
        out[:, 3] = np.where(th, self.ranks.cpu().numpy(), -1)
        out[:, 4] = self.kernels.cpu().numpy()
        out[:, 5] = self.areas.cpu().numpy()
        return out


def upsample_logits(mask_logits: Tensor, factor: int) -> Tensor:
    """[N, h, w] -> [N, h*f, w*f], bilinear (``align_corners=False``), the official x4 step."""
    if factor == 1:
        return mask_logits
    return F.interpolate(mask_logits[None], scale_factor=factor, mode="bilinear",
                         align_corners=False)[0]


def merge_candidates(cls_prob: Tensor, num_thing_kernels: int, num_things: int,
                     max_per_img: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """Official candidate list: thing top-k over (kernel, class) pairs, then stuff by score.

    cls_prob: [N, K] sigmoid probabilities. Returns (scores [M] f32, labels [M] i64,
    kernels [M] i64, P = number of thing candidates).
    """
    Q, T = num_thing_kernels, num_things
    thing = cls_prob[:Q, :T].flatten()  # [Q*T], index = kernel * T + class
    thing_scores, idx = thing.topk(min(max_per_img, thing.numel()), sorted=True)
    stuff_scores = cls_prob[Q:, T:].diagonal()  # [S] score of stuff kernel j on its own class
    stuff_scores, stuff_idx = torch.sort(stuff_scores, descending=True, stable=True)
    scores = torch.cat([thing_scores, stuff_scores])
    labels = torch.cat([idx % T, stuff_idx + T])
    kernels = torch.cat([idx // T, stuff_idx + Q])
    return scores, labels, kernels, int(thing_scores.numel())


def panoptic_merge(cls_prob: Tensor, mask_logits: Tensor, letterbox: Optional[Letterbox],
                   num_thing_kernels: int, num_things: int, cfg: MergeConfig = MergeConfig(),
                   upsample: int = 1) -> MergeResult:
    """Joint thing/stuff merge at camera resolution.

    cls_prob:    Tensor[N, K] float, sigmoid class probabilities (model label order)
    mask_logits: Tensor[N, h, w] float, mask logits over the padded network input
    letterbox:   how the frame was fitted (None: the masks already are at camera size)
    upsample:    bilinear factor applied to the logits first (the model's mask_upsample_stride)
    """
    N, K = cls_prob.shape
    if mask_logits.dim() != 3 or mask_logits.shape[0] != N:
        raise ValueError(f"mask_logits must be [N={N}, h, w], got {tuple(mask_logits.shape)}")
    if not 0 < num_things <= K or num_thing_kernels + K - num_things != N:
        raise ValueError(f"cls_prob {tuple(cls_prob.shape)} does not fit {num_thing_kernels} "
                         f"thing kernels and {num_things} thing classes")
    scores, labels, kernels, P = merge_candidates(cls_prob.float(), num_thing_kernels,
                                                  num_things, cfg.max_per_img)
    M = scores.numel()
    # A kernel listed twice (two thing classes) has one prob map; its lower-scored (= later)
    # candidate never beats its first one, so only first occurrences enter the arg-max. The
    # rows stay in candidate order, so ties still resolve to the lowest candidate index.
    first = _first_occurrence(kernels)  # [R] candidate indices
    rows = mask_logits.float()[kernels[first]]  # [R, h, w]
    # Exact pruning: a row that can win no pixel owns nothing and is dropped anyway, so only
    # rows that may win somewhere are rescaled to camera resolution (the expensive part).
    may_win, hi = _cell_bounds(rows, scores[first])  # [R, h, w] each
    alive = may_win.flatten(1).any(1)  # [R]
    first, rows, may_win, hi = first[alive], rows[alive], may_win[alive], hi[alive]
    k = _window_factor(rows.shape[-2:], letterbox, upsample) if cfg.windowed else None
    if k is not None:
        out_hw = letterbox.orig_hw if letterbox is not None else (
            rows.shape[-2] * upsample, rows.shape[-1] * upsample)
        row_owner, row_original = _owner_map_windowed(rows, scores[first], may_win, hi,
                                                      tuple(out_hw), upsample, k, cfg.mask_thr)
    else:
        row_owner, row_original = _owner_map(rows, scores[first], letterbox, upsample,
                                             cfg.mask_thr, cfg.chunk)
    H, W = row_owner.shape
    owner = first[row_owner.flatten()]  # [H*W] candidate index
    owned = torch.bincount(owner, minlength=M)  # [M]
    kernel_original = torch.zeros(N, dtype=torch.long, device=scores.device)
    kernel_original[kernels[first]] = row_original
    original = kernel_original[kernels]  # [M]
    is_thing = torch.arange(M, device=scores.device) < P
    ratio = owned.double() / original.clamp(min=1).double()  # python float division semantics
    keep = (~(is_thing & (scores < cfg.instance_score_thr)) & (owned > 0) & (original > 0)
            & ~(ratio < cfg.overlap_thr))
    order = torch.sort(-scores, stable=True).indices  # visit order (descending score)
    kept = order[keep[order]]  # [S] candidates in segment order
    lut = torch.zeros(M, dtype=torch.int32, device=scores.device)
    lut[kept] = torch.arange(1, kept.numel() + 1, dtype=torch.int32, device=scores.device)
    segment_map = lut[owner].view(H, W)
    return MergeResult(segment_map=segment_map, is_thing=is_thing[kept], labels=labels[kept],
                       scores=scores[kept], kernels=kernels[kept], ranks=kept,
                       areas=owned[kept])


def _first_occurrence(kernels: Tensor) -> Tensor:
    """[R] sorted indices i where kernels[i] appears for the first time."""
    M = kernels.numel()
    pos = torch.full((int(kernels.max()) + 1,), M, dtype=torch.long, device=kernels.device)
    pos.scatter_reduce_(0, kernels, torch.arange(M, device=kernels.device), reduce="amin")
    return pos[pos < M].sort().values


def _cell_bounds(logits: Tensor, scores: Tensor, margin: float = 1e-5
                 ) -> tuple[Tensor, Tensor]:
    """Per logit cell: which rows can be the arg-max of ``score * rescaled prob`` there, and an
    upper bound of each row's rescaled prob. logits [R, h, w], scores [R] -> ([R, h, w] bool,
    [R, h, w] float).

    Every camera pixel is a chain of bilinear resamples (x upsample, to pad size, crop, to
    camera size) of the logits, i.e. a convex combination of logits within 1.5 cells of its
    position, and sigmoid is monotonic. So with 5x5 max/min pools, ``score * sigmoid(max)`` bounds
    a row's value from above and ``score * sigmoid(min)`` from below at every pixel of a cell;
    a row whose upper bound is below the best lower bound in a cell wins no pixel there. The
    relative margin covers float rounding of the resamples, so the pruning is exact.
    """
    hi = _pool5(logits).sigmoid()  # [R, h, w]
    lo = (-_pool5(-logits)).sigmoid()
    s = scores.view(-1, 1, 1)
    best_lo = (lo * s).max(0).values * (1 - margin)  # [h, w]
    return (hi * s) * (1 + margin) >= best_lo, hi


def _pool5(x: Tensor) -> Tensor:
    """Separable 5x5 max pool (-inf padding) from shifted maxima; [R, h, w] -> [R, h, w]."""
    h, w = x.shape[-2:]
    p = F.pad(x, (2, 2, 2, 2), value=float("-inf"))  # [R, h+4, w+4]
    rows = p[:, 0:h, :].clone()
    for d in range(1, 5):
        torch.maximum(rows, p[:, d:d + h, :], out=rows)
    out = rows[:, :, 0:w].clone()
    for d in range(1, 5):
        torch.maximum(out, rows[:, :, d:d + w], out=out)
    return out


def _window_factor(hw: "torch.Size", letterbox: Optional[Letterbox], upsample: int
                   ) -> Optional[int]:
    """k when camera pixels are exactly (logits x upsample x k) cropped at the top-left, so a
    window of logits rescales to the same values as the whole map; None otherwise."""
    h, w = int(hw[0]), int(hw[1])
    if letterbox is None:
        return 1
    ph, pw = letterbox.pad_hw
    if letterbox.resized_hw != letterbox.orig_hw or ph % (h * upsample) or pw % (w * upsample):
        return None
    k = ph // (h * upsample)
    return k if k == pw // (w * upsample) and k in (1, 2, 4) else None


def _owner_map_windowed(logits: Tensor, scores: Tensor, may_win: Tensor, hi: Tensor,
                        out_hw: tuple[int, int], upsample: int, k: int, mask_thr: float,
                        margin: float = 1e-5) -> tuple[Tensor, Tensor]:
    """``_owner_map`` for the common geometry, rescaling each row only where it matters.

    A row is rescaled (x upsample, sigmoid, x k, exactly the full-map operations) only over the
    bounding box of the cells where it may win (``may_win`` from ``_cell_bounds``) or may be
    visible (upper bound ``hi`` >= mask_thr); elsewhere it neither owns a pixel nor counts as
    visible. Windows carry a 2-cell margin, beyond the 1.5-cell reach of the resamples, and the
    scale factors are powers of two, so the values inside equal the whole-map values bit for bit.
    """
    R, h, w = logits.shape
    H, W = out_hw
    s = upsample * k  # camera pixels per logit cell
    need = may_win | (hi * (1 + margin) >= mask_thr)  # [R, h, w]
    need[:, -(-H // s):, :] = False  # cells wholly outside the camera crop
    need[:, :, -(-W // s):] = False
    best_val = torch.full((H, W), -1.0, device=logits.device)
    best_idx = torch.zeros((H, W), dtype=torch.long, device=logits.device)
    original = torch.zeros(R, dtype=torch.long, device=logits.device)
    ys_any, xs_any = need.any(2), need.any(1)  # [R, h], [R, w]
    for r in range(R):
        ys, xs = torch.nonzero(ys_any[r]).flatten(), torch.nonzero(xs_any[r]).flatten()
        if ys.numel() == 0:
            continue
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        cy0, cy1, cx0, cx1 = max(0, y0 - 2), min(h, y1 + 2), max(0, x0 - 2), min(w, x1 + 2)
        p = upsample_logits(logits[r:r + 1, cy0:cy1, cx0:cx1], upsample).sigmoid()
        if k != 1:
            p = F.interpolate(p[None], size=((cy1 - cy0) * s, (cx1 - cx0) * s),
                              mode="bilinear", align_corners=False)[0]
        oy0, oy1, ox0, ox1 = y0 * s, min(y1 * s, H), x0 * s, min(x1 * s, W)
        tile = p[0, oy0 - cy0 * s: oy1 - cy0 * s, ox0 - cx0 * s: ox1 - cx0 * s]
        original[r] = int((tile >= mask_thr).to(torch.uint8).sum(dtype=torch.int64))
        val = tile * scores[r]
        region_val = best_val[oy0:oy1, ox0:ox1]  # views: updated in place
        better = val > region_val  # strict: an earlier row keeps a tie
        torch.where(better, val, region_val, out=region_val)
        best_idx[oy0:oy1, ox0:ox1].masked_fill_(better, r)
    return best_idx, original


def _owner_map(logits: Tensor, scores: Tensor, letterbox: Optional[Letterbox], upsample: int,
               mask_thr: float, chunk: int) -> tuple[Tensor, Tensor]:
    """Streaming arg-max of ``scores[r] * rescaled_prob[r]`` over rows, ``chunk`` rows at a time.

    logits: [R, h, w]; scores: [R]. Returns (owner [H, W] int64 row index, first maximum wins;
    original [R] int64 = #pixels with prob >= mask_thr). Equal to one arg-max over all rows.
    """
    best_val: Optional[Tensor] = None
    best_idx: Optional[Tensor] = None
    original = []
    for r0 in range(0, logits.shape[0], max(1, chunk)):
        probs = upsample_logits(logits[r0:r0 + chunk], upsample).sigmoid()  # [r, h', w']
        if letterbox is not None:
            probs = letterbox.to_original(probs).contiguous()  # [r, H, W]
        # count in uint8 -> int32 (exact up to 2^31 pixels): several times faster than bool sums
        hits = (probs >= mask_thr).view(probs.shape[0], -1).to(torch.uint8)
        original.append(hits.sum(1, dtype=torch.int32).long())
        probs.mul_(scores[r0:r0 + chunk].view(-1, 1, 1))
        val, idx = probs.max(0)  # first maximum within the chunk
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val  # strict: an earlier row keeps a tie
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + r0, best_idx)
    assert best_idx is not None
    return best_idx, torch.cat(original)




def semantic_map(result: MergeResult, model_to_train_id: "tuple[int, ...] | Tensor",
                 void_label: int = 255, void_as_road: bool = False) -> Tensor:
    """[H, W] int64 dataset train ids; void pixels get ``void_label`` (or 0 = road, the
    official export, with ``void_as_road``)."""
    dev = result.segment_map.device
    m2t = torch.as_tensor(model_to_train_id, dtype=torch.int64, device=dev)
    void = torch.tensor([0 if void_as_road else void_label], dtype=torch.int64, device=dev)
    lut = torch.cat([void, m2t[result.labels]])  # [S + 1]
    return lut[result.segment_map.long()]
