"""Colour visualisation of a PanopticFrame: class palette, id-stable track colours, overlay.

H x W image. Stuff (and things without a track id) take their class colour; tracked things take a
colour derived from the track id alone, so an id keeps its colour in every frame and every run.
Segment boundaries are drawn in white.
"""

from __future__ import annotations

import colorsys
from typing import Optional

import numpy as np

from vknet_core.types import PanopticFrame

# Cityscapes train-id colours (19 classes), the palette of the official visualiser.
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)
VOID_COLOR: tuple[int, int, int] = (0, 0, 0)


def class_palette(num_classes: int) -> np.ndarray:
    """[256, 3] uint8 colour per train id: Cityscapes colours for 19 classes, otherwise
    deterministic well-spread hues; index 255 (void) is black."""
    pal = np.zeros((256, 3), np.uint8)
    if num_classes == len(CITYSCAPES_PALETTE):
        pal[:num_classes] = CITYSCAPES_PALETTE
    else:
        for i in range(min(num_classes, 255)):
            pal[i] = _hue_color(i * 0.618033988749895, 0.55 + 0.3 * ((i * 7) % 3) / 2, 0.9)
    pal[255] = VOID_COLOR
    return pal


def _hue_color(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


def track_colors(track_ids: np.ndarray) -> np.ndarray:
    """[n, 3] uint8 colour per track id (>= 1); depends on the id only (golden-ratio hues with
    three saturation/value levels), so a track keeps its colour across frames."""
    ids = np.asarray(track_ids, np.int64).reshape(-1)
    out = np.zeros((ids.size, 3), np.uint8)
    for k, t in enumerate(ids):
        lvl = int(t) % 3
        out[k] = _hue_color(
            int(t) * 0.618033988749895, (0.95, 0.7, 0.85)[lvl], (1.0, 0.95, 0.75)[lvl]
        )
    return out


def colorize(frame: PanopticFrame, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """[H, W, 3] uint8 colour map of a frame (no image underneath)."""
    pal = class_palette(19) if palette is None else palette
    color = pal[frame.semantic]  # [H, W, 3]
    inst = frame.instance_ids
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if ids.size:
        lut = np.zeros((int(ids.max()) + 1, 3), np.uint8)
        lut[ids] = track_colors(ids)
        tracked = inst > 0
        color[tracked] = lut[inst[tracked]]
    return color


def boundaries(segment_map: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose right or lower neighbour belongs to another segment."""
    edge = np.zeros(segment_map.shape, bool)
    edge[:, :-1] |= segment_map[:, :-1] != segment_map[:, 1:]
    edge[:-1, :] |= segment_map[:-1, :] != segment_map[1:, :]
    return edge


def overlay(
    rgb: np.ndarray,
    frame: PanopticFrame,
    alpha: float = 0.5,
    palette: Optional[np.ndarray] = None,
    draw_boundaries: bool = True,
) -> np.ndarray:
    """Blend the colour map over the camera image.

    rgb: [H, W, 3] uint8 RGB; alpha: weight of the colours (0..1). Returns [H, W, 3] uint8.
    """
    if rgb.shape[:2] != frame.semantic.shape or rgb.dtype != np.uint8:
        raise ValueError(
            f"rgb must be uint8 [H,W,3] matching the frame {frame.semantic.shape}, "
            f"got {rgb.shape} {rgb.dtype}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    color = colorize(frame, palette).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * color
    if draw_boundaries:
        out[boundaries(frame.segment_map)] = 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
