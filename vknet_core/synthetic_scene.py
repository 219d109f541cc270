"""Synthetic street-scene video with panoptic ground truth (numpy + OpenCV, no framework).

    frames = make_sequence(np.random.default_rng(seed), frames=30, height=192, width=384)
    rgb, panoptic = frames[0]     # uint8 [H, W, 3] RGB, int64 [H, W] = train id * 1000 + id

Used by the ROS demo camera (``vknet_ros.demo``), the ROS benchmark (``scripts/bench_ros.py``)
and the dataset writer ``training/make_synthetic.py`` (KITTI-STEP layout), so none of them
depends on another.

Each sequence is a static street seen by a slowly panning camera: sky (10), buildings (2) with
window grids, vegetation (8) blobs and hedges, a far and a near sidewalk (1, tiled) and the road
(0), each with its own colour and texture. Cars (13: box body, cabin with dark windows, wheels,
dark outline) drive in two lanes and persons (11: head, shirt, trousers) walk on the sidewalks;
they enter and leave the view, change speed, and occlude each other in depth order (far
sidewalk < far lane < near lane < near sidewalk). Each object keeps its appearance and instance
id for the whole sequence. Everything is a function of (seed, sequence index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vknet_core.synthetic_drawing import (
    BUILDING,
    CAR,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    VEGETATION,
    background,
    car_sprite,
    person_sprite,
)

__all__ = [
    "BUILDING",
    "CAR",
    "LABEL_DIVISOR",
    "PERSON",
    "ROAD",
    "SIDEWALK",
    "SKY",
    "VEGETATION",
    "make_sequence",
]

LABEL_DIVISOR = 1000


@dataclass
class _Object:
    """A moving thing: a fixed sprite, a world x position (left edge) and a lane."""

    train_id: int
    instance_id: int
    rgb: np.ndarray  # uint8 [h, w, 3]
    mask: np.ndarray  # bool [h, w]
    x: float
    bottom: int
    vx: float
    depth: float  # z-order: larger is nearer (drawn later)
    min_speed: float
    max_speed: float


@dataclass(frozen=True)
class _Lane:
    train_id: int
    bottom: int
    height: float  # sprite height in px
    direction: int  # +1 right, -1 left, 0 either
    speed: tuple[float, float]
    depth: float
    spawn_p: float
    initial: tuple[int, int]  # number of objects at frame 0: integers in [lo, hi]


# ----------------------------------------------------------------------------- simulation


def _lanes(layout: dict[str, int], h: int, s: float) -> list[_Lane]:
    far_sw, near_sw = layout["far_sw"], layout["near_sw"]
    road_h = near_sw - far_sw
    return [
        _Lane(PERSON, far_sw - 2, 0.21 * h, 0, (0.8 * s, 2.0 * s), 0.0, 0.06, (0, 2)),
        _Lane(
            CAR, far_sw + int(0.45 * road_h), 0.15 * h, -1, (3.0 * s, 7.0 * s), 1.0, 0.1, (1, 2)
        ),
        _Lane(CAR, near_sw - int(0.06 * road_h), 0.2 * h, 1, (3.5 * s, 8.0 * s), 2.0, 0.1, (1, 2)),
        _Lane(PERSON, h - 3, 0.29 * h, 0, (0.8 * s, 2.2 * s), 3.0, 0.06, (0, 2)),
    ]


def _spawn(
    rng: np.random.Generator,
    lane: _Lane,
    inst: int,
    x_of: float | None,
    view: tuple[float, float],
    lane_idx: int,
) -> _Object:
    height = int(lane.height * rng.uniform(0.9, 1.1))
    direction = lane.direction or (1 if rng.random() < 0.5 else -1)
    if lane.train_id == CAR:
        rgb, mask = car_sprite(rng, height, direction)
    else:
        rgb, mask = person_sprite(rng, height)
    w = rgb.shape[1]
    if x_of is None:  # enter from the edge it moves away from
        x = view[0] - w + 1 if direction > 0 else view[1] - 1
    else:
        x = x_of - w / 2
    speed = rng.uniform(*lane.speed)
    return _Object(
        train_id=lane.train_id,
        instance_id=inst,
        rgb=rgb,
        mask=mask,
        x=float(x),
        bottom=lane.bottom + int(rng.integers(-1, 2)),
        vx=direction * speed,
        depth=lane.depth + 0.01 * lane_idx + 1e-4 * inst,
        min_speed=0.3 * lane.speed[0],
        max_speed=1.6 * lane.speed[1],
    )


def _paste(image: np.ndarray, sem: np.ndarray, inst: np.ndarray, obj: _Object, x0: int) -> None:
    h, w = obj.mask.shape
    y0 = obj.bottom - h
    H, W = sem.shape
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(H, y0 + h), min(W, x0 + w)
    if ys >= ye or xs >= xe:
        return
    m = obj.mask[ys - y0 : ye - y0, xs - x0 : xe - x0]
    image[ys:ye, xs:xe][m] = obj.rgb[ys - y0 : ye - y0, xs - x0 : xe - x0][m]
    sem[ys:ye, xs:xe][m] = obj.train_id
    inst[ys:ye, xs:xe][m] = obj.instance_id


def make_sequence(
    rng: np.random.Generator, frames: int = 30, height: int = 192, width: int = 384
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One synthetic sequence: ``frames`` x (rgb uint8 [H, W, 3], panoptic int64 [H, W])."""
    if frames < 1 or height < 32 or width < 32:
        raise ValueError(
            f"need frames >= 1 and a size of at least 32x32, got {frames} frames "
            f"of {height}x{width}"
        )
    s = height / 192.0  # sizes scale with the image height, speeds with it too
    cam_v = float(rng.uniform(-1.2, 1.2) * s) if rng.random() < 0.7 else 0.0
    pan = int(math.ceil(abs(cam_v) * (frames - 1))) + 2
    canvas_w = width + pan
    bg_rgb, bg_sem, layout = background(rng, height, canvas_w, s)
    cam_x = 0.0 if cam_v >= 0 else float(pan - 1)
    lanes = _lanes(layout, height, s)
    objects: list[_Object] = []
    next_id = 1
    view = (cam_x, cam_x + width)
    for li, lane in enumerate(lanes):  # objects already in view at frame 0
        n = int(rng.integers(lane.initial[0], lane.initial[1] + 1))
        slots = np.sort(rng.uniform(0.0, 1.0, size=n)) if n else []
        for u in slots:
            objects.append(_spawn(rng, lane, next_id, view[0] + u * width, view, li))
            next_id += 1
    out = []
    for _ in range(frames):
        view = (cam_x, cam_x + width)
        cx = int(round(cam_x))
        image = bg_rgb[:, cx : cx + width].copy()
        sem = bg_sem[:, cx : cx + width].copy()
        inst = np.zeros((height, width), np.int64)
        for obj in sorted(objects, key=lambda o: o.depth):
            _paste(image, sem, inst, obj, int(round(obj.x)) - cx)
        image += 3.0 * rng.standard_normal(image.shape).astype(np.float32)
        rgb = np.clip(image, 0, 255).astype(np.uint8)
        out.append((rgb, sem.astype(np.int64) * LABEL_DIVISOR + inst))
        # advance: speed changes, motion, leaving objects, new arrivals
        for obj in objects:
            if rng.random() < 0.08:
                sign = 1.0 if obj.vx >= 0 else -1.0
                obj.vx = sign * float(
                    np.clip(abs(obj.vx) * rng.uniform(0.4, 1.8), obj.min_speed, obj.max_speed)
                )
            obj.x += obj.vx
        cam_x = float(np.clip(cam_x + cam_v, 0, pan - 1))
        view = (cam_x, cam_x + width)
        objects = [
            o
            for o in objects
            if not (o.x + o.mask.shape[1] < view[0] - 2 and o.vx <= 0)
            and not (o.x > view[1] + 2 and o.vx >= 0)
            and view[0] - 2 * width < o.x < view[1] + width
        ]
        for li, lane in enumerate(lanes):
            if rng.random() < lane.spawn_p:
                obj = _spawn(rng, lane, next_id, None, view, li)
                clash = any(
                    o.depth // 1 == obj.depth // 1 and abs(o.x - obj.x) < o.mask.shape[1]
                    for o in objects
                )
                if not clash:
                    objects.append(obj)
                    next_id += 1
    if next_id >= LABEL_DIVISOR:
        raise RuntimeError(f"{next_id - 1} instances do not fit the label divisor {LABEL_DIVISOR}")
    return out
