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

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.postprocess.cells import CellGrid, make_grid
from vknet_core.postprocess.owners import CellOwners, resolve_owners
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
    windowed: bool = True  # decide per logit cell, rescale only where it can change (same result)


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
    owners: Optional[CellOwners] = field(default=None, repr=False)  # when merged cell-wise
    row_segment: Optional[Tensor] = field(default=None, repr=False)  # [R] int32 id per row

    @property
    def num_segments(self) -> int:
        return int(self.labels.numel())

    @property
    def thing_segments(self) -> Tensor:
        """[n] int64 positions (0-based) of the thing segments, in segment order."""
        return torch.nonzero(self.is_thing).flatten()

    def paint(self, lut: Tensor) -> Tensor:
        """[H, W] ``lut[segment_map]`` for a table lut [S + 1] indexed by segment id (0: void),
        painted from the cells in one pass when the merge was cell-wise, else gathered."""
        if self.owners is None or self.row_segment is None:
            return lut[self.segment_map.long()]
        return self.owners.paint(lut[self.row_segment])

    def cells_holding(self, segments: Tensor) -> Optional[tuple[CellGrid, Tensor]]:
        """(grid, [hc, wc] bool): logit cells holding a pixel of a segment with ``segments[id]``
        ([S + 1] bool) set; None when the merge was not cell-wise."""
        if self.owners is None or self.row_segment is None:
            return None
        o = self.owners
        row = segments[self.row_segment]  # [R] bool
        cells = row[o.cell_owner.clamp(min=0)] & (o.cell_owner >= 0)
        cells[o.amb_y, o.amb_x] = row[o.amb_owner].flatten(1).any(1)
        return o.grid, cells

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
    return F.interpolate(
        mask_logits[None], scale_factor=factor, mode="bilinear", align_corners=False
    )[0]


def merge_candidates(
    cls_prob: Tensor, num_thing_kernels: int, num_things: int, max_per_img: int
) -> tuple[Tensor, Tensor, Tensor, int]:
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


def panoptic_merge(
    cls_prob: Tensor,
    mask_logits: Tensor,
    letterbox: Optional[Letterbox],
    num_thing_kernels: int,
    num_things: int,
    cfg: MergeConfig = MergeConfig(),
    upsample: int = 1,
) -> MergeResult:
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
        raise ValueError(
            f"cls_prob {tuple(cls_prob.shape)} does not fit {num_thing_kernels} "
            f"thing kernels and {num_things} thing classes"
        )
    scores, labels, kernels, P = merge_candidates(
        cls_prob.float(), num_thing_kernels, num_things, cfg.max_per_img
    )
    M = scores.numel()
    # A kernel listed twice (two thing classes) has one prob map; its lower-scored (= later)
    # candidate never beats its first one, so only first occurrences enter the arg-max. The
    # rows stay in candidate order, so ties still resolve to the lowest candidate index.
    first = _first_occurrence(kernels)  # [R] candidate indices
    rows = mask_logits.float()[kernels[first]]  # [R, h, w]
    grid = _cell_grid(rows.shape[-2:], letterbox, upsample) if cfg.windowed else None
    is_thing = torch.arange(M, device=scores.device) < P
    if grid is not None:
        owners = resolve_owners(rows, scores[first], grid)
        row_owned = owners.owned  # [R]
        # the original area matters only for rows that own pixels and pass the score filter
        live = (row_owned > 0) & ~(is_thing[first] & (scores[first] < cfg.instance_score_thr))
        row_original = _original_for_keep(owners, rows, row_owned, live, cfg)
    else:
        row_owner, row_original = _owner_map(
            rows, scores[first], letterbox, upsample, cfg.mask_thr, cfg.chunk
        )
        row_owned = torch.bincount(row_owner.flatten(), minlength=first.numel())
    owned = torch.zeros(M, dtype=torch.long, device=scores.device)
    owned[first] = row_owned
    kernel_original = torch.zeros(N, dtype=torch.long, device=scores.device)
    kernel_original[kernels[first]] = row_original
    original = kernel_original[kernels]  # [M]
    ratio = owned.double() / original.clamp(min=1).double()  # python float division semantics
    keep = (
        ~(is_thing & (scores < cfg.instance_score_thr))
        & (owned > 0)
        & (original > 0)
        & ~(ratio < cfg.overlap_thr)
    )
    order = torch.sort(-scores, stable=True).indices  # visit order (descending score)
    kept = order[keep[order]]  # [S] candidates in segment order
    lut = torch.zeros(M, dtype=torch.int32, device=scores.device)
    lut[kept] = torch.arange(1, kept.numel() + 1, dtype=torch.int32, device=scores.device)
    row_segment = lut[first]  # [R]
    segment_map = owners.paint(row_segment) if grid is not None else row_segment[row_owner]
    return MergeResult(
        segment_map=segment_map,
        is_thing=is_thing[kept],
        labels=labels[kept],
        scores=scores[kept],
        kernels=kernels[kept],
        ranks=kept,
        areas=owned[kept],
        owners=owners if grid is not None else None,
        row_segment=row_segment,
    )


def _first_occurrence(kernels: Tensor) -> Tensor:
    """[R] sorted indices i where kernels[i] appears for the first time."""
    M = kernels.numel()
    pos = torch.full((int(kernels.max()) + 1,), M, dtype=torch.long, device=kernels.device)
    pos.scatter_reduce_(0, kernels, torch.arange(M, device=kernels.device), reduce="amin")
    return pos[pos < M].sort().values


def _cell_grid(
    hw: torch.Size, letterbox: Optional[Letterbox], upsample: int
) -> Optional[CellGrid]:
    """The cell grid when camera pixels are (logits x upsample x k) cropped at the top-left with
    power-of-two factors (the usual letterbox without a resize); None: whole-map path."""
    h, w = int(hw[0]), int(hw[1])
    if letterbox is None:
        return make_grid(
            (h, w), (upsample,), (h * upsample, w * upsample), (h * upsample, w * upsample)
        )
    ph, pw = letterbox.pad_hw
    if letterbox.resized_hw != letterbox.orig_hw or ph % (h * upsample):
        return None
    k = ph // (h * upsample)
    return make_grid((h, w), (upsample, k), (ph, pw), letterbox.orig_hw)


def _original_for_keep(
    owners: CellOwners, rows: Tensor, owned: Tensor, live: Tensor, cfg: MergeConfig
) -> Tensor:
    """[R] int64 original areas that give every ``live`` row the keep decision of its exact area:
    the exact area where the bounds leave the decision open, else a bound on the same side
    (``owned / original`` only falls as ``original`` grows)."""
    lo, hi = owners.original_bounds(cfg.mask_thr)
    thr = cfg.overlap_thr
    sure_keep = (lo > 0) & ~(owned.double() / hi.clamp(min=1).double() < thr)
    sure_drop = (hi == 0) | ((lo > 0) & (owned.double() / lo.clamp(min=1).double() < thr))
    need = live & ~sure_keep & ~sure_drop
    out = torch.where(sure_keep, hi, lo)
    if bool(need.any()):
        out = torch.where(need, owners.original(rows, cfg.mask_thr, need), out)
    return out


def _owner_map(
    logits: Tensor,
    scores: Tensor,
    letterbox: Optional[Letterbox],
    upsample: int,
    mask_thr: float,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """Streaming arg-max of ``scores[r] * rescaled_prob[r]`` over rows, ``chunk`` rows at a time.

    logits: [R, h, w]; scores: [R]. Returns (owner [H, W] int64 row index, first maximum wins;
    original [R] int64 = #pixels with prob >= mask_thr). Equal to one arg-max over all rows.
    """
    best_val: Optional[Tensor] = None
    best_idx: Optional[Tensor] = None
    original = []
    for r0 in range(0, logits.shape[0], max(1, chunk)):
        probs = upsample_logits(logits[r0 : r0 + chunk], upsample).sigmoid()  # [r, h', w']
        if letterbox is not None:
            probs = letterbox.to_original(probs).contiguous()  # [r, H, W]
        # count in uint8 -> int32 (exact up to 2^31 pixels): several times faster than bool sums
        hits = (probs >= mask_thr).view(probs.shape[0], -1).to(torch.uint8)
        original.append(hits.sum(1, dtype=torch.int32).long())
        probs.mul_(scores[r0 : r0 + chunk].view(-1, 1, 1))
        val, idx = probs.max(0)  # first maximum within the chunk
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val  # strict: an earlier row keeps a tie
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + r0, best_idx)
    assert best_idx is not None
    return best_idx, torch.cat(original)


def semantic_lut(
    result: MergeResult,
    model_to_train_id: tuple[int, ...] | Tensor,
    void_label: int = 255,
    void_as_road: bool = False,
) -> Tensor:
    """[S + 1] int64 dataset train id per segment id (index 0: void, given ``void_label``, or 0 =
    road, the official export, with ``void_as_road``); ``lut[segment_map]`` is the semantic map."""
    dev = result.labels.device
    m2t = torch.as_tensor(model_to_train_id, dtype=torch.int64, device=dev)
    void = torch.tensor([0 if void_as_road else void_label], dtype=torch.int64, device=dev)
    return torch.cat([void, m2t[result.labels]])


def semantic_map(
    result: MergeResult,
    model_to_train_id: tuple[int, ...] | Tensor,
    void_label: int = 255,
    void_as_road: bool = False,
) -> Tensor:
    """[H, W] int64 dataset train ids; void pixels get ``void_label`` (or 0 = road, the
    official export, with ``void_as_road``)."""
    lut = semantic_lut(result, model_to_train_id, void_label, void_as_road)
    return lut[result.segment_map.long()]
