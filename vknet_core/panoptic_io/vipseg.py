"""VIPSeg panomasks (VIPSeg-Dataset README, metrics.md §4) and the VIPSeg category table.

Single-channel PNG (8/16 bit) in ``panomasks/VIDEO/FRAME.png``: 0 (and the known bad value 200)
void, 1..124 = category + 1 without instance, >= 125 = (category + 1) * 100 + instance. Decoded
into the ``vipseg_r50`` preset's train ids (the 58 thing categories first, then stuff, both in
category order) with thing instance = file instance + 1, so a real instance is never 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vknet_core.panoptic_io.png import PanopticFormatError, read_png, split_ids, write_png

# panoVIPSeg_categories.json entries with "isthing": 1 (category ids)
VIPSEG_THING_CATEGORIES: tuple[int, ...] = (
    2,
    4,
    8,
    10,
    41,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    54,
    55,
    56,
    60,
    61,
    62,
    63,
    64,
    65,
    72,
    74,
    76,
    77,
    78,
    79,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
    91,
    92,
    95,
    96,
    97,
    99,
    100,
    101,
    102,
    106,
    107,
    108,
    109,
    114,
    115,
    116,
    117,
    118,
    122,
    123,
)
VIPSEG_NUM_CATEGORIES = 124
VIPSEG_VOID_VALUES: tuple[int, ...] = (0, 200)
# train id -> VIPSeg category id (things first, then stuff)
VIPSEG_TRAIN_TO_CATEGORY: tuple[int, ...] = VIPSEG_THING_CATEGORIES + tuple(
    c for c in range(VIPSEG_NUM_CATEGORIES) if c not in VIPSEG_THING_CATEGORIES
)
# VIPSeg category id -> train id
CATEGORY_TO_TRAIN_ID: dict[int, int] = {c: i for i, c in enumerate(VIPSEG_TRAIN_TO_CATEGORY)}
_VIPSEG_CAT_TO_TRAIN = np.argsort(np.array(VIPSEG_TRAIN_TO_CATEGORY))
_VIPSEG_CAT_IS_THING = np.isin(np.arange(VIPSEG_NUM_CATEGORIES), VIPSEG_THING_CATEGORIES)


def decode_vipseg(
    mask: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """VIPSeg panomask values [H,W] -> int64 [H,W] panoptic ids (``vipseg_r50`` train ids)."""
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise PanopticFormatError(
            f"VIPSeg panomasks are single-channel integer [H,W], got {mask.shape} {mask.dtype}"
        )
    v = mask.astype(np.int64)
    void = np.isin(v, VIPSEG_VOID_VALUES)
    region = v <= VIPSEG_NUM_CATEGORIES  # category + 1, no instance
    cat = np.where(region, v - 1, v // 100 - 1)
    inst = np.where(region, 0, v % 100 + 1)
    bad = ~void & ((cat < 0) | (cat >= VIPSEG_NUM_CATEGORIES))
    if bad.any():
        raise PanopticFormatError(
            f"VIPSeg values {np.unique(v[bad])[:10].tolist()} decode to categories "
            f"outside 0..{VIPSEG_NUM_CATEGORIES - 1}"
        )
    cat = np.where(void, 0, cat)
    bad = ~void & ~region & ~_VIPSEG_CAT_IS_THING[cat]
    if bad.any():
        raise PanopticFormatError(
            f"VIPSeg values {np.unique(v[bad])[:10].tolist()} encode instances of stuff categories"
        )
    if label_divisor <= 100:
        raise ValueError(
            f"VIPSeg instances go up to 100, label_divisor must be > 100, got {label_divisor}"
        )
    ids = _VIPSEG_CAT_TO_TRAIN[cat] * label_divisor + inst
    return np.where(void, ignore_label * label_divisor, ids)


def encode_vipseg(
    panoptic: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """int [H, W] panoptic ids (``vipseg_r50`` train ids) -> uint16 [H, W] panomask values.

    Thing instance i >= 1 is stored as file instance i - 1 (at most 100 per class); thing
    instance 0 and stuff become the region value category + 1; stuff must have instance 0.
    """
    sem, inst = split_ids(panoptic, label_divisor)
    void = sem == ignore_label
    if (~void & (sem >= VIPSEG_NUM_CATEGORIES)).any():
        raise ValueError(
            f"VIPSeg train ids are 0..{VIPSEG_NUM_CATEGORIES - 1}, "
            f"got {np.unique(sem[~void]).tolist()[:10]}"
        )
    cat = np.asarray(VIPSEG_TRAIN_TO_CATEGORY)[np.where(void, 0, sem)]
    thing = _VIPSEG_CAT_IS_THING[cat] & ~void
    if (~thing & ~void & (inst != 0)).any():
        raise ValueError(
            "VIPSeg stores stuff without instances, but some stuff pixels have instance != 0"
        )
    if (thing & (inst > 100)).any():
        raise ValueError(
            f"VIPSeg stores at most 100 instances per class, got instance {int(inst[thing].max())}"
        )
    out = np.where(thing & (inst > 0), (cat + 1) * 100 + inst - 1, cat + 1)
    return np.where(void, 0, out).astype(np.uint16)


def read_vipseg(
    path: str | Path, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    mask = read_png(path)
    if mask.ndim != 2:
        raise PanopticFormatError(
            f"{path}: VIPSeg panomasks are single-channel PNGs, got shape {mask.shape}"
        )
    try:
        return decode_vipseg(mask, label_divisor, ignore_label)
    except PanopticFormatError as e:
        raise PanopticFormatError(f"{path}: {e}") from None


def write_vipseg(
    path: str | Path, panoptic: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> Path:
    return write_png(path, encode_vipseg(panoptic, label_divisor, ignore_label))
