"""Exact camera-resolution values of resampled maps, computed only in the logit cells that matter.

A logit cell is one pixel of an [h, w] map; a chain of bilinear resamples (``align_corners=False``)
by power-of-two factors f1, f2, ... (product s) turns it into s x s camera pixels, cropped to the
camera size at the bottom/right. Two facts make a cell-wise merge exact:

1. Every camera pixel of cell (y, x) draws only on cells y-1..y+1, x-1..x+1, and with a weight of
   at most ``reach`` on a neighbouring cell. So ``cell_bounds`` bounds every camera value of a
   cell from its 3 x 3 neighbourhood, and a cell whose answer the bounds already fix (one sure
   arg-max winner, a sure threshold side) needs no camera-resolution values at all.
2. Resampling a 3 x 3 window of cells (clamped inside the map at the borders) gives the
   centre cell's camera values bit for bit as the whole map does: the fractional source
   positions and weights of power-of-two factors are exact, and no needed source is clamped
   differently. ``exact_cells`` does this for a batch of (row, cell) pairs at once, with the
   windows side by side in wide strips. Two PyTorch CPU details matter for the last bit, both
   measured with torch 2.14.1 here: the bilinear kernel rounds images narrower than about 120
   output columns differently from wide ones, so every resample here (and the whole map, else
   ``make_grid`` declines) is at least ``MIN_OUT_W`` wide; and the sigmoid's scalar tail rounds
   differently from its vectorised body, so the sigmoid between stages runs on buffers whose
   every element takes the vectorised path, as the whole-map reference does.

Shapes: R rows (kernels or channels), C channels per row, [h, w] logit cells, B (row, cell)
pairs, s = product of the factors, (H, W) the camera size, hc x wc the cells inside the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

_VEC = 16  # floats per vectorised sigmoid step (2 AVX2 vectors); chunks stay below the grain size
_CHUNK = 32768  # at::internal::GRAIN_SIZE: smaller buffers run on one thread, fully vectorised
# PyTorch's CPU bilinear kernel rounds differently for narrow images (outputs up to ~120 wide
# here) than for wide ones: every resample of the cell-wise path, and of the whole map it must
# equal, produces at least this many columns.
MIN_OUT_W = 192


@dataclass(frozen=True)
class CellGrid:
    """Geometry of a map resampled by ``factors`` and cropped to ``out_hw`` at the top-left."""

    h: int
    w: int
    factors: tuple[int, ...]  # bilinear stages, each a power of two (1: identity)
    out_hw: tuple[int, int]  # camera (H, W) <= (h * s, w * s)

    @property
    def s(self) -> int:
        """Camera pixels per cell side."""
        out = 1
        for f in self.factors:
            out *= f
        return out

    @property
    def cells_hw(self) -> tuple[int, int]:
        """(hc, wc): cells with at least one camera pixel."""
        return -(-self.out_hw[0] // self.s), -(-self.out_hw[1] // self.s)

    def pixel_counts(self) -> Tensor:
        """[hc, wc] int64 camera pixels of each cell (edge cells are cropped)."""
        (H, W), s = self.out_hw, self.s
        hc, wc = self.cells_hw
        ys = (H - torch.arange(hc) * s).clamp(max=s)
        xs = (W - torch.arange(wc) * s).clamp(max=s)
        return ys[:, None] * xs[None, :]

    def inside(self, cy: Tensor, cx: Tensor) -> Tensor:
        """[B, s, s] bool: which pixels of cells (cy, cx) lie inside the camera frame."""
        (H, W), s = self.out_hw, self.s
        r = torch.arange(s, device=cy.device)
        ys = (cy[:, None] * s + r) < H  # [B, s]
        xs = (cx[:, None] * s + r) < W
        return ys[:, :, None] & xs[:, None, :]


def paint_cells(cells: Tensor, ys: Tensor, xs: Tensor, blocks: Tensor, grid: CellGrid) -> Tensor:
    """[H, W] camera map: each cell filled with ``cells`` [hc, wc], except cells (ys[a], xs[a])
    which get the per-pixel ``blocks`` [A, s, s]; one pass over the camera frame."""
    hc, wc = grid.cells_hw
    s, (H, W) = grid.s, grid.out_hw
    full = cells[:, None, :, None].expand(hc, s, wc, s).reshape(hc * s, wc * s)
    full.view(hc, s, wc, s)[ys, :, xs, :] = blocks
    return full[:H, :W].contiguous()


def any_in_cells(mask: Tensor, grid: CellGrid) -> Tensor:
    """[H, W] bool -> [hc, wc] bool: cells holding at least one set pixel."""
    hc, wc = grid.cells_hw
    s, (H, W) = grid.s, grid.out_hw
    buf = mask.new_zeros((hc * s, wc * s))
    buf[:H, :W] = mask
    return buf.view(hc, s, wc, s).any(3).any(1)


def make_grid(
    hw: tuple[int, int], factors: tuple[int, ...], pad_hw: tuple[int, int], out_hw: tuple[int, int]
) -> Optional[CellGrid]:
    """The grid when ``factors`` (powers of two) scale [h, w] exactly to ``pad_hw`` and the camera
    is a top-left crop of it; None when the cell-wise path does not apply (use the whole map)."""
    h, w = int(hw[0]), int(hw[1])
    fs = tuple(int(f) for f in factors)  # a factor 1 stays: it fixes where the sigmoid goes
    s = 1
    for f in fs:
        if f < 1 or f & (f - 1):
            return None
        s *= f
    if h < 3 or w < 3 or tuple(pad_hw) != (h * s, w * s):
        return None
    width = w
    for f in fs:  # the whole-map resamples must be wide too (see MIN_OUT_W)
        width *= f
        if f != 1 and width < MIN_OUT_W:
            return None
    if not (0 < out_hw[0] <= h * s and 0 < out_hw[1] <= w * s):
        return None
    return CellGrid(h, w, fs, (int(out_hw[0]), int(out_hw[1])))


def reach(factors: tuple[int, ...]) -> float:
    """Largest weight of a neighbouring cell in any value feeding a camera pixel, taken at the
    first stage (the sigmoid, if any, comes after it; later stages only mix those values)."""
    if not factors:
        return 0.0
    f = factors[0]
    return 0.5 + 0.5 / f if len(factors) > 1 else 0.5 - 0.5 / f


def cell_bounds(
    x: Tensor, a: float, margin: float = 1e-5, centre_only: bool = False
) -> tuple[Tensor, Tensor]:
    """[..., h, w] -> (hi, lo) [..., h, w]: bounds of every first-stage value a camera pixel of
    each cell draws on. Along each axis such a value is ``(1 - t) * centre + t * neighbour`` with
    t <= a, at most ``(1 - a) * v + a * max3(v)``; applying that per axis bounds the bilinear
    mix. ``margin`` (relative to the magnitudes) covers the resamples' float rounding.
    centre_only: x is [..., 3, 3] neighbourhoods (edges replicated) and the bounds [...] are
    those of the centre cells only."""
    if centre_only:
        c = x[..., 1, :]  # [..., 3] centre row
        hy = c * (1 - a) + x.amax(-2) * a  # per column, along y
        ly = c * (1 - a) + x.amin(-2) * a
        hi = hy[..., 1] * (1 - a) + hy.amax(-1) * a
        lo = ly[..., 1] * (1 - a) + ly.amin(-1) * a
        slack = (hi.abs() + lo.abs() + 1) * margin
        return hi + slack, lo - slack

    def spread(v: Tensor, dim: int, op) -> Tensor:
        n = v.shape[dim]
        m = v.clone()  # max (min) of each value and its two neighbours; an edge has one
        lo_, hi_ = m.narrow(dim, 1, n - 1), m.narrow(dim, 0, n - 1)
        op(lo_, v.narrow(dim, 0, n - 1), out=lo_)
        op(hi_, v.narrow(dim, 1, n - 1), out=hi_)
        return m.mul_(a).add_(v, alpha=1 - a)

    hi = spread(spread(x, -2, torch.maximum), -1, torch.maximum)
    lo = spread(spread(x, -2, torch.minimum), -1, torch.minimum)
    slack = (hi.abs() + lo.abs() + 1) * margin
    return hi + slack, lo - slack


def vector_sigmoid(x: Tensor) -> Tensor:
    """``x.sigmoid()`` with every element on PyTorch's vectorised CPU path (the path the whole-map
    reference takes; its scalar tail may differ in the last bit). Same shape as ``x``."""
    if x.device.type != "cpu":
        return x.sigmoid()
    flat = x.reshape(-1)
    n = flat.numel()
    pad = (-n) % _VEC
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    else:
        flat = flat.clone()
    for i in range(0, flat.numel(), _CHUNK):
        flat[i : i + _CHUNK].sigmoid_()
    return flat[:n].view(x.shape)


def exact_cells(
    maps: Tensor,
    rows: Tensor,
    cy: Tensor,
    cx: Tensor,
    grid: CellGrid,
    sigmoid_after: Optional[int] = None,
) -> Tensor:
    """Camera-resolution values of ``maps[rows[b]]`` in cell (cy[b], cx[b]), equal bit for bit to
    resampling the whole map.

    maps: [R, C, h, w] float; rows, cy, cx: [B] int64; sigmoid_after: stage index after which the
    sigmoid is applied (None: never). Returns [B, C, s, s] float32.

    Cells in the first and last column get one image each, anchored at that border so the
    resample clamps there as on the whole map (``_edges``). All others go into strips: runs of
    horizontally adjacent cells of one row side by side, one strip per window row offset, cut
    down to the values the next stage needs, so most of the work is a few large resamples.
    """
    perm, values = exact_cells_any_order(maps, rows, cy, cx, grid, sigmoid_after)
    out = torch.empty_like(values)
    out[perm] = values
    return out


def exact_cells_any_order(
    maps: Tensor,
    rows: Tensor,
    cy: Tensor,
    cx: Tensor,
    grid: CellGrid,
    sigmoid_after: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    """``exact_cells`` without putting the values back in input order: (perm [B], values
    [B, C, s, s]) with values[k] those of pair perm[k] (saves a copy of the values)."""
    h, w = maps.shape[-2:]
    edge = (cx == 0) | (cx == w - 1)
    e = torch.nonzero(edge).flatten()
    perms, parts = [], []
    if e.numel():
        perms.append(e)
        parts.append(_edges(maps, rows[e], cy[e], cx[e], grid, sigmoid_after))
    y0 = (cy - 1).clamp(0, h - 3)
    for oy in range(3):
        sel = torch.nonzero(~edge & (cy - y0 == oy)).flatten()
        if sel.numel():
            order, block = _strip(maps, rows[sel], y0[sel], cx[sel], oy, grid, sigmoid_after)
            perms.append(sel[order])
            parts.append(block)
    if not parts:
        C, s = maps.shape[1], grid.s
        return rows.new_zeros(0), maps.new_empty((0, C, s, s))
    if len(parts) == 1:
        return perms[0], parts[0]
    return torch.cat(perms), torch.cat(parts)


def _edges(
    maps: Tensor,
    rows: Tensor,
    cy: Tensor,
    cx: Tensor,
    grid: CellGrid,
    sigmoid_after: Optional[int],
) -> Tensor:
    """``exact_cells`` for cells in the first or last column: one image per cell, the logit
    rows y0..y0+2 and enough columns from that border for the wide kernel; the border stays the
    image border, so the resample clamps there as on the whole map. [B, C, s, s]."""
    C, h, w = maps.shape[1:]
    s = grid.s
    out = maps.new_empty((rows.numel(), C, s, s))
    y0 = (cy - 1).clamp(0, h - 3)
    for right in (False, True):
        for oy in range(3):
            sel = torch.nonzero(((cx == w - 1) == right) & (cy - y0 == oy)).flatten()
            if sel.numel():
                out[sel] = _edge_group(maps, rows[sel], y0[sel], oy, right, grid, sigmoid_after)
    return out


def _edge_group(
    maps: Tensor,
    rows: Tensor,
    y0: Tensor,
    oy: int,
    right: bool,
    grid: CellGrid,
    sigmoid_after: Optional[int],
) -> Tensor:
    """``_edges`` for cells on one side whose window starts ``oy`` rows above: [n, C, s, s]."""
    C, h, w = maps.shape[1:]
    s, dev = grid.s, maps.device
    f1 = grid.factors[0]
    wi = min(w, max(3, -(-MIN_OUT_W // f1)))
    xs = torch.arange(w - wi, w, device=dev) if right else torch.arange(wi, device=dev)
    ys = y0[:, None] + torch.arange(3, device=dev)  # [n, 3]
    flat = (
        ((rows * C)[:, None] + torch.arange(C, device=dev))[:, :, None, None] * h
        + ys[:, None, :, None]
    ) * w + xs  # [n, C, 3, wi]
    v = maps.reshape(-1)[flat]
    if f1 != 1:
        v = F.interpolate(v, scale_factor=f1, mode="bilinear", align_corners=False)
    if len(grid.factors) == 1:
        if sigmoid_after == 0:
            v = vector_sigmoid(v)
        v = v[:, :, oy * s : oy * s + s]
    else:
        lo, hi = max(0, oy * f1 - 1), min(3 * f1 - 1, oy * f1 + f1)
        f2 = grid.factors[1]
        wc = min(wi * f1, max(f1 + 2, -(-MIN_OUT_W // f2)))
        v = v[:, :, lo : hi + 1, -wc:] if right else v[:, :, lo : hi + 1, :wc]
        if sigmoid_after == 0:
            v = vector_sigmoid(v.contiguous())
        if f2 != 1:
            v = F.interpolate(v, scale_factor=f2, mode="bilinear", align_corners=False)
        v = v[:, :, oy * s - lo * f2 : oy * s - lo * f2 + s]
    return v[..., -s:] if right else v[..., :s]


def _strip(
    maps: Tensor,
    rows: Tensor,
    y0: Tensor,
    cx: Tensor,
    oy: int,
    grid: CellGrid,
    sigmoid_after: Optional[int],
) -> tuple[Tensor, Tensor]:
    """``exact_cells`` for cells off the left/right border whose window starts ``oy`` rows above
    them. Runs of adjacent cells share one window of logit rows y0..y0+2; their windows lie side
    by side in one [C, 3, width] image. A value only depends on sources strictly inside its own
    window (or clamped at the map's top/bottom, which the strip's own edges reproduce), so the
    neighbours in the strip change only values that are thrown away. Returns (order [B], the
    values [B, C, s, s] of cells ``order``)."""
    C, h, w = maps.shape[1:]
    s, dev = grid.s, maps.device
    order = torch.argsort((rows * h + y0) * w + cx)
    r, y, x = rows[order], y0[order], cx[order]
    B = r.numel()
    start = torch.ones(B, dtype=torch.bool, device=dev)
    start[1:] = (r[1:] != r[:-1]) | (y[1:] != y[:-1]) | (x[1:] != x[:-1] + 1)
    run = torch.cumsum(start, 0) - 1  # [B] run of each cell
    first = torch.nonzero(start).flatten()  # [n_runs] first cell of each run
    length = torch.bincount(run)  # [n_runs]
    pos = torch.arange(B, device=dev) - first[run]  # index of each cell within its run

    def tiles(width: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per strip column: (run, column within the run's tile); and tile offsets [n_runs]."""
        off = torch.cumsum(width, 0) - width
        col_run = torch.repeat_interleave(torch.arange(width.numel(), device=dev), width)
        return col_run, torch.arange(int(width.sum()), device=dev) - off[col_run], off

    col_run, col, off = tiles(length + 2)  # logit columns x_first - 1 .. x_last + 1
    xs = x[first][col_run] - 1 + col  # [width]
    ys = y[first][col_run][None, :] + torch.arange(3, device=dev)[:, None]  # [3, width]
    flat = (
        ((r[first][col_run] * C)[None, None, :] + torch.arange(C, device=dev)[:, None, None])
        * (h * w)
        + ys[None] * w
        + xs
    )  # [C, 3, width] into maps.flatten()
    v = maps.reshape(-1).index_select(0, flat.flatten()).view(1, *flat.shape)
    f1 = grid.factors[0]
    if f1 != 1:
        v = F.interpolate(_widen(v, f1), scale_factor=f1, mode="bilinear", align_corners=False)
    if len(grid.factors) == 1:
        if sigmoid_after == 0:
            v = vector_sigmoid(v)
        row0, col0, tile_off = oy * s, s, off * s  # the cells' values in the window images
    else:
        # keep the first-stage values the second stage reads: rows oy*f1 - 1 .. oy*f1 + f1,
        # columns f1 - 1 .. (length + 1) * f1 of each tile (clamped at the map's top/bottom)
        lo, hi = max(0, oy * f1 - 1), min(3 * f1 - 1, oy * f1 + f1)
        col_run2, col2, off2 = tiles(length * f1 + 2)
        v = _take(v, lo, hi + 1 - lo, off[col_run2] * f1 + f1 - 1 + col2)
        if sigmoid_after == 0:
            v = vector_sigmoid(v)
        f2 = grid.factors[1]
        if f2 != 1:
            v = F.interpolate(_widen(v, f2), scale_factor=f2, mode="bilinear", align_corners=False)
        row0, col0, tile_off = oy * s - lo * f2, f2, off2 * f2
    cols = (tile_off[run] + col0 + pos * s)[:, None] + torch.arange(s, device=dev)  # [B, s]
    block = _take(v, row0, s, cols.flatten())  # [1, C, s, B * s]
    return order, block.view(C, s, B, s).permute(2, 0, 1, 3)


def _widen(v: Tensor, f: int) -> Tensor:
    """Zero columns appended to [1, C, H, W] so a x f resample is wide (``MIN_OUT_W``); they
    only change values past the last tile, which are thrown away."""
    extra = -(-MIN_OUT_W // f) - v.shape[-1]
    return F.pad(v, (0, extra)) if extra > 0 else v


def _take(v: Tensor, row0: int, rows: int, cols: Tensor) -> Tensor:
    """``v[:, :, row0:row0 + rows, cols]`` for v [1, C, H, W] as one flat gather (a gather along
    the last dimension copies one element per index otherwise): [1, C, rows, len(cols)]."""
    C, H, W = v.shape[1:]
    r = torch.arange(C, device=v.device)[:, None] * H + row0 + torch.arange(rows, device=v.device)
    idx = r[:, :, None] * W + cols  # [C, rows, n]
    return v.reshape(-1).index_select(0, idx.flatten()).view(1, *idx.shape)
