"""Drawing the synthetic street (``vknet_core.synthetic_scene``): textured background and the
car / person sprites, with OpenCV on numpy arrays. Sizes scale with ``s`` = image height / 192.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 8, 10, 11, 13

CAR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (200, 30, 30),
    (30, 60, 200),
    (225, 200, 40),
    (235, 235, 235),
    (40, 170, 190),
    (140, 50, 170),
    (20, 20, 25),
)
SHIRT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (220, 40, 60),
    (250, 150, 20),
    (30, 140, 230),
    (240, 240, 80),
    (190, 60, 200),
    (250, 250, 250),
    (20, 190, 120),
)
TROUSER_COLOURS: tuple[tuple[int, int, int], ...] = ((35, 35, 55), (40, 60, 120), (70, 60, 50))
SKIN_COLOURS: tuple[tuple[int, int, int], ...] = ((235, 195, 160), (200, 150, 110), (140, 95, 70))
BUILDING_COLOURS: tuple[tuple[int, int, int], ...] = (
    (150, 100, 80),
    (135, 115, 105),
    (170, 130, 100),
    (125, 95, 95),
)


def jitter(rng: np.random.Generator, colour: Sequence[int], amount: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Low-frequency noise float32 [h, w], roughly unit std, features ~``cell`` px."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# ----------------------------------------------------------------------------- background


def background(
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
        colour = np.array(
            jitter(rng, BUILDING_COLOURS[rng.integers(len(BUILDING_COLOURS))], 10), np.float32
        )
        sem[btop:base, x : x + bw] = BUILDING
        bld[btop:base, x : x + bw] = colour
        ww, wh, sx, sy = max(2, int(6 * s)), max(2, int(8 * s)), int(14 * s), int(16 * s)
        win = np.array(jitter(rng, (45, 55, 75), 8), np.float32)
        for wy in range(btop + int(6 * s), base - wh - int(4 * s), sy):
            for wx in range(x + int(5 * s), x + bw - ww - int(3 * s), sx):
                bld[wy : wy + wh, wx : wx + ww] = win
        x += bw
    bld += 5 * rng.standard_normal((h, w, 1)).astype(np.float32)

    # vegetation: tree canopies and hedges in front of the buildings
    for _ in range(int(rng.integers(2, 5) * w / (384 * s))):
        cx, cy = int(rng.uniform(0, w)), int(base - h * rng.uniform(0.12, 0.25))
        ax, ay = int(rng.uniform(14, 30) * s), int(rng.uniform(12, 22) * s)
        cv2.ellipse(sem, (cx, cy), (ax, ay), 0, 0, 360, VEGETATION, -1)
        sem[cy:base, max(cx - ax // 2, 0) : cx + ax // 2] = VEGETATION
    hx = 0
    while hx < w:
        length = int(rng.uniform(30, 120) * s)
        if rng.random() < 0.5:
            sem[base - int(h * rng.uniform(0.04, 0.07)) : base, hx : hx + length] = VEGETATION
        hx += length
    veg_col = np.array(jitter(rng, (55, 125, 45), 10), np.float32)
    veg = (
        veg_col
        + 25 * _smooth_noise(rng, h, w, 6 * s)[..., None]
        + 10 * rng.standard_normal((h, w, 1)).astype(np.float32)
    )

    # ground: far sidewalk, road, near sidewalk
    sem[base:far_sw] = SIDEWALK
    sem[far_sw:near_sw] = ROAD
    sem[near_sw:] = SIDEWALK
    sw_col = np.array(jitter(rng, (175, 150, 160), 8), np.float32)
    tile = max(4, int(12 * s))
    xx = np.arange(w)[None, :]
    grid = ((xx % tile) < 2) | ((yy % tile) < 2)
    sidewalk = (
        sw_col - 35 * grid[..., None] + 5 * rng.standard_normal((h, w, 1)).astype(np.float32)
    )
    road_col = np.array(jitter(rng, (85, 85, 90), 5), np.float32)
    road = (
        road_col
        + 7 * rng.standard_normal((h, w, 1)).astype(np.float32)
        + 5 * _smooth_noise(rng, h, w, 20 * s)[..., None]
    )

    for cls, tex in (
        (SKY, sky),
        (BUILDING, bld),
        (VEGETATION, veg),
        (SIDEWALK, sidewalk),
        (ROAD, road),
    ):
        m = sem == cls
        rgb[m] = tex[m]
    layout = {"base": base, "far_sw": far_sw, "near_sw": near_sw}
    return rgb, sem, layout


# ----------------------------------------------------------------------------- sprites


def _outline(rgb: np.ndarray, mask: np.ndarray, thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, (25, 25, 30), thickness)


def car_sprite(
    rng: np.random.Generator, height: int, facing: int
) -> tuple[np.ndarray, np.ndarray]:
    """A side-view car: body, cabin with two dark windows, two wheels, dark outline."""
    h = max(8, height)
    w = int(h * rng.uniform(1.9, 2.3))
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    colour = jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 15)
    body = (0, int(0.38 * h), w - 1, int(0.85 * h))
    cab_l, cab_r = int(rng.uniform(0.18, 0.26) * w), int(rng.uniform(0.72, 0.8) * w)
    cabin = np.array(
        [
            [cab_l, body[1]],
            [cab_l + int(0.1 * w), int(0.05 * h)],
            [cab_r - int(0.1 * w), int(0.05 * h)],
            [cab_r, body[1]],
        ],
        np.int32,
    )
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
    win = np.array(
        [
            [cab_l + 2 * inset, pane_bot],
            [cab_l + int(0.1 * w) + inset, pane_top],
            [mid - inset, pane_top],
            [mid - inset, pane_bot],
        ],
        np.int32,
    )
    win2 = np.array(
        [
            [mid + inset, pane_bot],
            [mid + inset, pane_top],
            [cab_r - int(0.1 * w) - inset, pane_top],
            [cab_r - 2 * inset, pane_bot],
        ],
        np.int32,
    )
    cv2.fillPoly(rgb, [win, win2], (40, 50, 70))
    # lights: headlight at the front, tail light at the back
    lh = max(1, int(0.08 * h))
    front, back = (w - 1 - lh, 0) if facing > 0 else (0, w - 1 - lh)
    ly = int(0.45 * h)
    cv2.rectangle(rgb, (front, ly), (front + lh, ly + lh), (250, 240, 150), -1)
    cv2.rectangle(rgb, (back, ly), (back + lh, ly + lh), (220, 20, 20), -1)
    _outline(rgb, mask, max(1, int(round(h / 20))))
    return rgb, mask.astype(bool)


def person_sprite(rng: np.random.Generator, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A standing person: head with hair, shirt with arms, trousers split into two legs."""
    h = max(10, height)
    w = max(5, int(h * rng.uniform(0.3, 0.36)))
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    shirt = jitter(rng, SHIRT_COLOURS[rng.integers(len(SHIRT_COLOURS))], 15)
    trousers = jitter(rng, TROUSER_COLOURS[rng.integers(len(TROUSER_COLOURS))], 10)
    skin = jitter(rng, SKIN_COLOURS[rng.integers(len(SKIN_COLOURS))], 10)
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
