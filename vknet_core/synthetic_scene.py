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
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 8, 10, 11, 13
LABEL_DIVISOR = 1000

CAR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (200, 30, 30), (30, 60, 200), (225, 200, 40), (235, 235, 235), (40, 170, 190),
    (140, 50, 170), (20, 20, 25),
)
SHIRT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (220, 40, 60), (250, 150, 20), (30, 140, 230), (240, 240, 80), (190, 60, 200),
    (250, 250, 250), (20, 190, 120),
)
TROUSER_COLOURS: tuple[tuple[int, int, int], ...] = ((35, 35, 55), (40, 60, 120), (70, 60, 50))
SKIN_COLOURS: tuple[tuple[int, int, int], ...] = ((235, 195, 160), (200, 150, 110), (140, 95, 70))
BUILDING_COLOURS: tuple[tuple[int, int, int], ...] = (
    (150, 100, 80), (135, 115, 105), (170, 130, 100), (125, 95, 95),
)


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


def _jitter(rng: np.random.Generator, colour: Sequence[int], amount: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Low-frequency noise float32 [h, w], roughly unit std, features ~``cell`` px."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# ----------------------------------------------------------------------------- background


def _background(
    rng: np.random.Generator, h: int, w: int, s: float
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Static street canvas: (rgb float32 [h, w, 3], semantic uint8 [h, w], row layout)."""
    base = int(h * (0.44 + rng.uniform(-0.03, 0.03)))  # bottom of buildings / top of sidewalk
    far_sw = base + int(h * rng.uniform(0.07, 0.09))  # top of road
    near_sw = int(h * rng.uniform(0.84, 0.88))  # top of the near sidewalk
    sem = np.full((h, w), SKY, dtype=np.uint8)
    yy = np.arange(h)[:, None]
    rgb = np.zeros((h, w, 3), dtype=np.float32)

    # sky: vertical gradient + soft clouds
    top, bot = np.array([80, 140, 215], np.float32), np.array([165, 200, 240], np.float32)
    t = (yy / max(base, 1)).clip(0, 1)[..., None]
    sky = top * (1 - t) + bot * t + 6 * _smooth_noise(rng, h, w, 40 * s)[..., None]
    clouds = np.clip(_smooth_noise(rng, h, w, 30 * s) - 0.8, 0, None)[..., None] * 60
    sky = sky + clouds

    # buildings: blocks with window grids
    bld = np.zeros((h, w, 3), np.float32)
    x = 0
    while x < w:
        bw = int(rng.uniform(45, 110) * s)
        btop = int(h * rng.uniform(0.08, 0.3))
        colour = np.array(_jitter(rng, BUILDING_COLOURS[rng.integers(len(BUILDING_COLOURS))], 10),
                          np.float32)
        sem[btop:base, x:x + bw] = BUILDING
        bld[btop:base, x:x + bw] = colour
        ww, wh, sx, sy = max(2, int(6 * s)), max(2, int(8 * s)), int(14 * s), int(16 * s)
        win = np.array(_jitter(rng, (45, 55, 75), 8), np.float32)
        for wy in range(btop + int(6 * s), base - wh - int(4 * s), sy):
            for wx in range(x + int(5 * s), x + bw - ww - int(3 * s), sx):
                bld[wy:wy + wh, wx:wx + ww] = win
        x += bw
    bld += 5 * rng.standard_normal((h, w, 1)).astype(np.float32)

    # vegetation: tree canopies and hedges in front of the buildings
    for _ in range(int(rng.integers(2, 5) * w / (384 * s))):
        cx, cy = int(rng.uniform(0, w)), int(base - h * rng.uniform(0.12, 0.25))
        ax, ay = int(rng.uniform(14, 30) * s), int(rng.uniform(12, 22) * s)
        cv2.ellipse(sem, (cx, cy), (ax, ay), 0, 0, 360, VEGETATION, -1)
        sem[cy:base, max(cx - ax // 2, 0):cx + ax // 2] = VEGETATION
    hx = 0
    while hx < w:
        length = int(rng.uniform(30, 120) * s)
        if rng.random() < 0.5:
            sem[base - int(h * rng.uniform(0.04, 0.07)):base, hx:hx + length] = VEGETATION
        hx += length
    veg_col = np.array(_jitter(rng, (55, 125, 45), 10), np.float32)
    veg = (veg_col + 25 * _smooth_noise(rng, h, w, 6 * s)[..., None]
           + 10 * rng.standard_normal((h, w, 1)).astype(np.float32))

    # ground: far sidewalk, road, near sidewalk
    sem[base:far_sw] = SIDEWALK
    sem[far_sw:near_sw] = ROAD
    sem[near_sw:] = SIDEWALK
    sw_col = np.array(_jitter(rng, (175, 150, 160), 8), np.float32)
    tile = max(4, int(12 * s))
    xx = np.arange(w)[None, :]
    grid = ((xx % tile) < 2) | ((yy % tile) < 2)
    sidewalk = (sw_col - 35 * grid[..., None]
                + 5 * rng.standard_normal((h, w, 1)).astype(np.float32))
    road_col = np.array(_jitter(rng, (85, 85, 90), 5), np.float32)
    road = (road_col + 7 * rng.standard_normal((h, w, 1)).astype(np.float32)
            + 5 * _smooth_noise(rng, h, w, 20 * s)[..., None])

    for cls, tex in ((SKY, sky), (BUILDING, bld), (VEGETATION, veg), (SIDEWALK, sidewalk),
                     (ROAD, road)):
        m = sem == cls
        rgb[m] = tex[m]
    layout = {"base": base, "far_sw": far_sw, "near_sw": near_sw}
    return rgb, sem, layout


# ----------------------------------------------------------------------------- sprites


def _outline(rgb: np.ndarray, mask: np.ndarray, thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, (25, 25, 30), thickness)


def _car_sprite(
    rng: np.random.Generator, height: int, facing: int
) -> tuple[np.ndarray, np.ndarray]:
    """A side-view car: body, cabin with two dark windows, two wheels, dark outline."""
    h = max(8, height)
    w = int(h * rng.uniform(1.9, 2.3))
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    colour = _jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 15)
    body = (0, int(0.38 * h), w - 1, int(0.85 * h))
    cab_l, cab_r = int(rng.uniform(0.18, 0.26) * w), int(rng.uniform(0.72, 0.8) * w)
    cabin = np.array([[cab_l, body[1]], [cab_l + int(0.1 * w), int(0.05 * h)],
                      [cab_r - int(0.1 * w), int(0.05 * h)], [cab_r, body[1]]], np.int32)
    for img, c in ((rgb, colour), (mask, 1)):
        cv2.rectangle(img, body[:2], body[2:], c, -1)
        cv2.fillPoly(img, [cabin], c)
    r = max(2, int(0.16 * h))
    for wx in (int(0.2 * w), int(0.8 * w)):
        cv2.circle(mask, (wx, h - 1 - r), r, 1, -1)
        cv2.circle(rgb, (wx, h - 1 - r), r, (15, 15, 15), -1)
        cv2.circle(rgb, (wx, h - 1 - r), max(1, r // 2), (150, 150, 150), -1)
    # windows: two dark panes inside the cabin
    inset = max(1, int(0.06 * h))
    pane_top, pane_bot = int(0.05 * h) + 2 * inset, body[1] - inset
    mid = (cab_l + cab_r) // 2
    win = np.array([[cab_l + 2 * inset, pane_bot], [cab_l + int(0.1 * w) + inset, pane_top],
                    [mid - inset, pane_top], [mid - inset, pane_bot]], np.int32)
    win2 = np.array([[mid + inset, pane_bot], [mid + inset, pane_top],
                     [cab_r - int(0.1 * w) - inset, pane_top], [cab_r - 2 * inset, pane_bot]],
                    np.int32)
    cv2.fillPoly(rgb, [win, win2], (40, 50, 70))
    # lights: headlight at the front, tail light at the back
    lh = max(1, int(0.08 * h))
    front, back = (w - 1 - lh, 0) if facing > 0 else (0, w - 1 - lh)
    ly = int(0.45 * h)
    cv2.rectangle(rgb, (front, ly), (front + lh, ly + lh), (250, 240, 150), -1)
    cv2.rectangle(rgb, (back, ly), (back + lh, ly + lh), (220, 20, 20), -1)
    _outline(rgb, mask, max(1, int(round(h / 20))))
    return rgb, mask.astype(bool)


def _person_sprite(rng: np.random.Generator, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A standing person: head with hair, shirt with arms, trousers split into two legs."""
    h = max(10, height)
    w = max(5, int(h * rng.uniform(0.3, 0.36)))
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    shirt = _jitter(rng, SHIRT_COLOURS[rng.integers(len(SHIRT_COLOURS))], 15)
    trousers = _jitter(rng, TROUSER_COLOURS[rng.integers(len(TROUSER_COLOURS))], 10)
    skin = _jitter(rng, SKIN_COLOURS[rng.integers(len(SKIN_COLOURS))], 10)
    cx, r = w // 2, max(2, int(0.09 * h))
    neck = 2 * r + 1
    hip = int(0.56 * h)
    torso = (int(0.12 * w), neck, w - 1 - int(0.12 * w), hip)
    for img, cs in ((rgb, (skin, shirt, trousers)), (mask, (1, 1, 1))):
        cv2.circle(img, (cx, r), r, cs[0], -1)
        cv2.rectangle(img, torso[:2], torso[2:], cs[1], -1)
        leg = max(1, int(0.3 * w))
        cv2.rectangle(img, (cx - leg - 1, hip), (cx - 1, h - 1), cs[2], -1)
        cv2.rectangle(img, (cx + 1, hip), (cx + leg + 1, h - 1), cs[2], -1)
    cv2.ellipse(rgb, (cx, r), (r, r), 0, 180, 360, (40, 25, 15), -1)  # hair
    _outline(rgb, mask, 1)
    return rgb, mask.astype(bool)


# ----------------------------------------------------------------------------- simulation


def _lanes(layout: dict[str, int], h: int, s: float) -> list[_Lane]:
    base, far_sw, near_sw = layout["base"], layout["far_sw"], layout["near_sw"]
    road_h = near_sw - far_sw
    return [
        _Lane(PERSON, far_sw - 2, 0.21 * h, 0, (0.8 * s, 2.0 * s), 0.0, 0.06, (0, 2)),
        _Lane(CAR, far_sw + int(0.45 * road_h), 0.15 * h, -1, (3.0 * s, 7.0 * s), 1.0, 0.1,
              (1, 2)),
        _Lane(CAR, near_sw - int(0.06 * road_h), 0.2 * h, 1, (3.5 * s, 8.0 * s), 2.0, 0.1,
              (1, 2)),
        _Lane(PERSON, h - 3, 0.29 * h, 0, (0.8 * s, 2.2 * s), 3.0, 0.06, (0, 2)),
    ]


def _spawn(rng: np.random.Generator, lane: _Lane, inst: int, x_of: float | None,
           view: tuple[float, float], lane_idx: int) -> _Object:
    height = int(lane.height * rng.uniform(0.9, 1.1))
    direction = lane.direction or (1 if rng.random() < 0.5 else -1)
    if lane.train_id == CAR:
        rgb, mask = _car_sprite(rng, height, direction)
    else:
        rgb, mask = _person_sprite(rng, height)
    w = rgb.shape[1]
    if x_of is None:  # enter from the edge it moves away from
        x = view[0] - w + 1 if direction > 0 else view[1] - 1
    else:
        x = x_of - w / 2
    speed = rng.uniform(*lane.speed)
    return _Object(
        train_id=lane.train_id, instance_id=inst, rgb=rgb, mask=mask, x=float(x),
        bottom=lane.bottom + int(rng.integers(-1, 2)), vx=direction * speed,
        depth=lane.depth + 0.01 * lane_idx + 1e-4 * inst, min_speed=0.3 * lane.speed[0],
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
    m = obj.mask[ys - y0:ye - y0, xs - x0:xe - x0]
    image[ys:ye, xs:xe][m] = obj.rgb[ys - y0:ye - y0, xs - x0:xe - x0][m]
    sem[ys:ye, xs:xe][m] = obj.train_id
    inst[ys:ye, xs:xe][m] = obj.instance_id


def make_sequence(
    rng: np.random.Generator, frames: int = 30, height: int = 192, width: int = 384
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One synthetic sequence: ``frames`` x (rgb uint8 [H, W, 3], panoptic int64 [H, W])."""
    if frames < 1 or height < 32 or width < 32:
        raise ValueError(f"need frames >= 1 and a size of at least 32x32, got {frames} frames "
                         f"of {height}x{width}")
    s = height / 192.0  # sizes scale with the image height, speeds with it too
    cam_v = float(rng.uniform(-1.2, 1.2) * s) if rng.random() < 0.7 else 0.0
    pan = int(math.ceil(abs(cam_v) * (frames - 1))) + 2
    canvas_w = width + pan
    bg_rgb, bg_sem, layout = _background(rng, height, canvas_w, s)
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
    for t in range(frames):
        view = (cam_x, cam_x + width)
        cx = int(round(cam_x))
        image = bg_rgb[:, cx:cx + width].copy()
        sem = bg_sem[:, cx:cx + width].copy()
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
                obj.vx = sign * float(np.clip(abs(obj.vx) * rng.uniform(0.4, 1.8),
                                              obj.min_speed, obj.max_speed))
            obj.x += obj.vx
        cam_x = float(np.clip(cam_x + cam_v, 0, pan - 1))
        view = (cam_x, cam_x + width)
        objects = [o for o in objects
                   if not (o.x + o.mask.shape[1] < view[0] - 2 and o.vx <= 0)
                   and not (o.x > view[1] + 2 and o.vx >= 0)
                   and view[0] - 2 * width < o.x < view[1] + width]
        for li, lane in enumerate(lanes):
            if rng.random() < lane.spawn_p:
                obj = _spawn(rng, lane, next_id, None, view, li)
                clash = any(o.depth // 1 == obj.depth // 1 and abs(o.x - obj.x) < o.mask.shape[1]
                            for o in objects)
                if not clash:
                    objects.append(obj)
                    next_id += 1
    if next_id >= LABEL_DIVISOR:
        raise RuntimeError(f"{next_id - 1} instances do not fit the label divisor {LABEL_DIVISOR}")
    return out
