"""Tracker boxes from thing segments with the semantic filter (video_knet.md §7.3).

K classes (T things first), h x w semantic logits (stride 8 of the padded input), H x W camera.
A box is the tight box of (segment AND semantic-thing) pixels as (x1, y1, x2, y2) inclusive pixel
coordinates; an empty set gives the official placeholder (-1, -1, 10, 10). Boxes only feed the
tracker's duplicate and backdrop logic.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.postprocess.cells import (
    CellGrid,
    any_in_cells,
    cell_bounds,
    exact_cells_any_order,
    make_grid,
    paint_cells,
    reach,
    vector_sigmoid,
)
from vknet_core.postprocess.panoptic import MergeResult
from vknet_core.preprocess import Letterbox

EMPTY_BOX: tuple[float, float, float, float] = (-1.0, -1.0, 10.0, 10.0)


def semantic_thing_mask(
    sem_logits: Tensor,
    out_hw: tuple[int, int],
    num_things: int,
    letterbox: Optional[Letterbox] = None,
    where: Optional[Tensor] = None,
    cellwise: bool = True,
    where_cells: Optional[Tensor] = None,
) -> Tensor:
    """[H, W] bool: pixels whose semantic arg-max is a thing class.

    sem_logits: Tensor[K, h, w] float. With ``letterbox`` the map goes through the padding crop
    (the correct geometry); without, it is resized straight to ``out_hw`` (the official code).
    where: Tensor[H, W] bool or None, the pixels whose answer is wanted (e.g. thing segments);
    cells of the logit grid holding none of them come back False. None: the whole map.
    cellwise: False forces the whole-map path (the reference the cell-wise one equals).
    where_cells: Tensor[hc, wc] bool or None, ``where`` given per cell of ``semantic_grid``
    (cheaper when the caller knows it); ignored on the whole-map path.

    With the usual letterbox (power-of-two stride, no resize) the answer is decided per logit
    cell from bounds and computed per pixel only in the cells the bounds leave open
    (``cells.py``), with the whole-map values; otherwise the whole map is resampled.
    """
    x = sem_logits.float()
    grid = semantic_grid(tuple(x.shape[-2:]), letterbox) if cellwise else None
    if grid is not None and tuple(out_hw) == grid.out_hw:
        if where_cells is not None and tuple(where_cells.shape) != grid.cells_hw:
            raise ValueError(
                f"where_cells must be [{grid.cells_hw[0]}, {grid.cells_hw[1]}] "
                f"(the semantic cell grid), got {tuple(where_cells.shape)}"
            )
        if where_cells is None and where is not None:
            where_cells = any_in_cells(where, grid)
        return _thing_mask_cells(x, num_things, grid, where_cells)
    x = x[None]  # [1, K, h, w]
    if letterbox is not None:
        x = letterbox.to_original(x)
    else:
        x = F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False)
    # Official: argmax(sigmoid(x)) < T. The first maximum wins and things come first, so this is
    # max over thing channels >= max over stuff channels; sigmoid is monotonic, so it can be
    # applied after the max (the same saturation ties). Channel-wise maxima stay contiguous.
    x = x[0]  # [K, H, W]
    thing, stuff = x[0].clone(), x[num_things].clone()
    for k in range(1, num_things):
        torch.maximum(thing, x[k], out=thing)
    for k in range(num_things + 1, x.shape[0]):
        torch.maximum(stuff, x[k], out=stuff)
    return thing.sigmoid() >= stuff.sigmoid()


def thing_segment_filter(
    result: MergeResult,
    sem_logits: Tensor,
    num_things: int,
    letterbox: Optional[Letterbox],
    out_hw: tuple[int, int],
) -> Tensor:
    """``semantic_thing_mask`` where a merge ``result`` has thing segments ([H, W] bool, False
    in cells without any): the cells come from the cell-wise merge when both grids agree."""
    is_thing = torch.zeros(result.num_segments + 1, dtype=torch.bool, device=sem_logits.device)
    is_thing[result.thing_segments + 1] = True
    held = result.cells_holding(is_thing)
    grid = semantic_grid(tuple(sem_logits.shape[-2:]), letterbox)
    if (
        held is not None
        and grid is not None
        and (held[0].s, held[0].out_hw) == (grid.s, grid.out_hw)
    ):  # the same cells on both grids
        return semantic_thing_mask(sem_logits, out_hw, num_things, letterbox, where_cells=held[1])
    return semantic_thing_mask(
        sem_logits, out_hw, num_things, letterbox, where=result.paint(is_thing)
    )


def semantic_grid(hw: tuple[int, int], letterbox: Optional[Letterbox]) -> Optional[CellGrid]:
    """The cell grid of [h, w] semantic logits under ``letterbox`` (one resample to the padded
    size, then the crop); None where the cell-wise path does not apply."""
    if letterbox is None or letterbox.resized_hw != letterbox.orig_hw:
        return None
    h, w = int(hw[0]), int(hw[1])
    return make_grid((h, w), (letterbox.pad_hw[0] // h,), letterbox.pad_hw, letterbox.orig_hw)


def _thing_mask_cells(
    x: Tensor, T: int, grid: CellGrid, wanted: Optional[Tensor], gap: float = 1e-6
) -> Tensor:
    """``semantic_thing_mask`` per logit cell. x: [K, h, w]. A cell is surely thing when the
    sigmoid of its lowest thing maximum beats that of its highest stuff maximum by ``gap`` (many
    float steps) or saturates to 1; surely not when the reverse holds; else per pixel."""
    hc, wc = grid.cells_hw
    h, w = x.shape[-2:]
    a = reach(grid.factors)
    if wanted is None:
        wanted = torch.ones((hc, wc), dtype=torch.bool, device=x.device)
    cy, cx = torch.nonzero(wanted, as_tuple=True)  # [n] cells whose answer is wanted
    d = torch.arange(-1, 2, device=x.device)
    yy, xx = (cy[:, None] + d).clamp(0, h - 1), (cx[:, None] + d).clamp(0, w - 1)  # [n, 3]
    hi, lo = cell_bounds(x[:, yy[:, :, None], xx[:, None, :]], a, centre_only=True)  # [K, n]
    t_hi, t_lo, s_hi, s_lo = hi[:T].amax(0), lo[:T].amax(0), hi[T:].amax(0), lo[T:].amax(0)
    sure = (t_lo > 17.5) | (t_lo.sigmoid() - s_hi.sigmoid() > gap)  # sigmoid(17.5) == 1.0f
    open_ = ~sure & ~(s_lo.sigmoid() - t_hi.sigmoid() > gap)  # [n]
    thing = torch.zeros((hc, wc), dtype=torch.bool, device=x.device)
    thing[cy[sure], cx[sure]] = True
    ys, xs = cy[open_], cx[open_]
    # only channels that can be their group's maximum somewhere in the cell are resampled:
    # the others stay below the channel holding the group's highest lower bound
    hi, lo = hi[:, open_], lo[:, open_]  # [K, A]
    cand = torch.cat([hi[:T] >= lo[:T].amax(0), hi[T:] >= lo[T:].amax(0)])  # [K, A]
    k, a = torch.nonzero(cand, as_tuple=True)  # [B] (channel, open cell) pairs
    perm, v = exact_cells_any_order(x[:, None], k, ys[a], xs[a], grid)  # [B, 1, s, s]
    k, a, v = k[perm], a[perm], v[:, 0]
    s = grid.s
    best = v.new_full((2, ys.numel(), s, s), float("-inf"))  # thing / stuff maxima per cell
    best.view(-1, s, s).scatter_reduce_(
        0, ((k >= T).long() * ys.numel() + a).view(-1, 1, 1).expand(-1, s, s), v, "amax"
    )
    blocks = vector_sigmoid(best[0]) >= vector_sigmoid(best[1])  # [A, s, s]
    return paint_cells(thing, ys, xs, blocks, grid)


def segment_boxes(
    segment_map: Tensor, seg_ids: Tensor, keep_pixels: Optional[Tensor] = None
) -> Tensor:
    """Tight boxes of segments, vectorised over all pixels at once.

    segment_map: Tensor[H, W] int, segment id per pixel (0 = none)
    seg_ids:     Tensor[n] int, ids whose boxes are wanted
    keep_pixels: Tensor[H, W] bool or None, pixels allowed to count (the semantic filter)
    Returns Tensor[n, 4] float32 (x1, y1, x2, y2), inclusive; EMPTY_BOX where nothing counts.
    """
    H, W = segment_map.shape
    dev = segment_map.device
    n_ids = int(segment_map.max().item()) + 1 if segment_map.numel() else 1
    n_ids = max(n_ids, int(seg_ids.max().item()) + 1 if seg_ids.numel() else 1)
    flat = segment_map.flatten()
    if keep_pixels is not None:  # only the pixels that count: usually a small part of the frame
        idx = torch.nonzero(keep_pixels.flatten()).flatten()
    else:
        idx = torch.arange(H * W, device=dev)
    seg = flat[idx].long()
    coords = torch.stack([idx % W, idx // W])  # [2, P] x, y
    big = H + W + 1
    lo = torch.full((2, n_ids), big, dtype=torch.long, device=dev)
    hi = torch.full((2, n_ids), -1, dtype=torch.long, device=dev)
    sel = seg.expand(2, -1)
    lo.scatter_reduce_(1, sel, coords, reduce="amin")
    hi.scatter_reduce_(1, sel, coords, reduce="amax")
    sid = seg_ids.long().to(dev)
    boxes = torch.cat([lo[:, sid], hi[:, sid]]).t().float()  # [n, 4] x1, y1, x2, y2
    empty = hi[0, sid] < 0
    boxes[empty] = torch.tensor(EMPTY_BOX, device=dev)
    return boxes
