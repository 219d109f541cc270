"""Arg-max owner map of the merge, decided per logit cell and refined only where it can change.

R rows (one per kernel, in candidate order: ties go to the lower row), [h, w] mask logits, a
``CellGrid`` (x upsample, sigmoid, x k, crop; s x s camera pixels per cell), hc x wc cells inside
the camera, A cells resolved per pixel. The owner of a camera pixel is the first row maximising
``score * prob``, exactly as the whole-map arg-max, but:

- per cell, every row's ``score * prob`` is bounded (``cells.cell_bounds``); where one row's
  lower bound beats every other row's upper bound it owns the whole cell;
- elsewhere only the rows whose upper bound reaches the best lower bound are rescaled, and only
  in that cell (``cells.exact_cells``), so the values compared are the whole-map values.

The "original" area (pixels with prob >= mask_thr) is bounded the same way and counted exactly
only for the rows whose keep decision the bounds leave open (``original``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from vknet_core.postprocess.cells import (
    CellGrid,
    cell_bounds,
    exact_cells,
    exact_cells_any_order,
    paint_cells,
    reach,
)


@dataclass
class CellOwners:
    """Resolved owners. cell_owner: [hc, wc] int64 row owning the whole cell (-1: per pixel);
    amb_y, amb_x: [A] int64 cells resolved per pixel; amb_owner: [A, s, s] int64 row per pixel;
    owned: [R] int64 camera pixels owned; p_hi, p_lo: [R, hc, wc] prob bounds per cell."""

    grid: CellGrid
    cell_owner: Tensor
    amb_y: Tensor
    amb_x: Tensor
    amb_owner: Tensor
    owned: Tensor
    p_hi: Tensor
    p_lo: Tensor
    _bounds: dict = field(default_factory=dict)  # mask_thr -> original_bounds

    def paint(self, lut: Tensor) -> Tensor:
        """[H, W] ``lut[owner]`` for a per-row lookup table lut [R] (e.g. int32 segment ids)."""
        return paint_cells(
            lut[self.cell_owner.clamp(min=0)],
            self.amb_y,
            self.amb_x,
            lut[self.amb_owner],
            self.grid,
        )

    def original(self, logits: Tensor, mask_thr: float, rows: Tensor) -> Tensor:
        """[R] int64 exact count of pixels with prob >= mask_thr for the rows selected by ``rows``
        ([R] bool; 0 for the others), rescaling only the cells its bounds leave open.
        logits: the [R, h, w] rows given to ``resolve_owners``."""
        lo = self.original_bounds(mask_thr)[0].clone()
        grid = self.grid
        straddle = (self.p_hi >= mask_thr) & ~(self.p_lo >= mask_thr) & rows[:, None, None]
        r, cy, cx = torch.nonzero(straddle, as_tuple=True)
        p = exact_cells(logits[:, None], r, cy, cx, grid, sigmoid_after=0)[:, 0]  # [B, s, s]
        hits = ((p >= mask_thr) & grid.inside(cy, cx)).flatten(1).sum(1)
        out = lo.index_add_(0, r, hits)
        return torch.where(rows, out, torch.zeros_like(out))

    def original_bounds(self, mask_thr: float) -> tuple[Tensor, Tensor]:
        """([R], [R]) int64 lower and upper bounds of each row's original area."""
        if mask_thr not in self._bounds:
            pix = self.grid.pixel_counts().to(self.p_hi.device).flatten().float()
            # float32 sums of pixel counts are exact: a frame has far fewer than 2^24 pixels
            sure = (self.p_lo >= mask_thr).flatten(1).float() @ pix  # [R]
            maybe = (self.p_hi >= mask_thr).flatten(1).float() @ pix
            self._bounds[mask_thr] = (sure.long(), maybe.long())
        return self._bounds[mask_thr]


def resolve_owners(
    logits: Tensor, scores: Tensor, grid: CellGrid, margin: float = 1e-5
) -> CellOwners:
    """Owners for rows ``logits`` [R, h, w] with ``scores`` [R]; see the module docstring."""
    R = logits.shape[0]
    hc, wc = grid.cells_hw
    s = grid.s
    hi, lo = cell_bounds(logits, reach(grid.factors))  # [R, h, w] logit bounds
    # sigmoid and the later (convex) stages keep the order; the margin covers their rounding
    p_hi = (hi[:, :hc, :wc].sigmoid() * (1 + margin)).contiguous()  # [R, hc, wc]
    p_lo = (lo[:, :hc, :wc].sigmoid() * (1 - margin)).contiguous()
    sc = scores.view(-1, 1, 1)
    v_hi, v_lo = p_hi * sc * (1 + margin), p_lo * sc * (1 - margin)
    best_lo, best_row = v_lo.max(0)  # [hc, wc]
    cand = v_hi >= best_lo  # [R, hc, wc]; rows below can win no pixel of the cell
    ambiguous = cand.sum(0) > 1
    cell_owner = torch.where(ambiguous, torch.full_like(best_row, -1), best_row)
    amb_y, amb_x = torch.nonzero(ambiguous, as_tuple=True)  # [A]
    a_idx, r = torch.nonzero(cand[:, amb_y, amb_x].t(), as_tuple=True)  # [B] sorted by cell, row
    A = amb_y.numel()
    perm, p = exact_cells_any_order(
        logits[:, None], r, amb_y[a_idx], amb_x[a_idx], grid, sigmoid_after=0
    )
    a_idx, r = a_idx[perm], r[perm]
    val = p[:, 0] * scores[r].view(-1, 1, 1)  # [B, s, s], as the whole-map ``prob * score``
    idx = a_idx.view(-1, 1, 1).expand(-1, s, s)
    best = val.new_full((A, s, s), float("-inf")).scatter_reduce_(0, idx, val, "amax")
    first = torch.where(val == best[a_idx], r.view(-1, 1, 1), R)  # first maximum wins
    amb_owner = torch.full((A, s, s), R, dtype=torch.long, device=logits.device)
    amb_owner.scatter_reduce_(0, idx, first, "amin")
    pix = grid.pixel_counts().to(logits.device)
    owned = torch.zeros(R, dtype=torch.long, device=logits.device)
    owned.index_add_(0, best_row[~ambiguous], pix[~ambiguous])
    counted = torch.where(grid.inside(amb_y, amb_x), amb_owner, R)  # [A, s, s]; R: cropped
    owned += torch.bincount(counted.flatten(), minlength=R + 1)[:R]
    return CellOwners(grid, cell_owner, amb_y, amb_x, amb_owner, owned, p_hi, p_lo)
