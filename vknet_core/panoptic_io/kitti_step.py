"""KITTI-STEP panoptic PNGs (metrics.md §4): R = semantic train id (255 void), G * 256 + B =
instance id; decoded to int64 ``semantic * label_divisor + instance``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vknet_core.panoptic_io.png import PanopticFormatError, read_png, split_ids, write_png


def decode_kitti_step(
    rgb: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """KITTI-STEP PNG pixels uint8 [H, W, 3] (R, G, B) -> int64 [H, W] panoptic ids.

    Void pixels (R = ignore_label) become ``ignore_label * label_divisor`` whatever G, B hold.
    Raises PanopticFormatError if an instance id is not below ``label_divisor``.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PanopticFormatError(
            f"KITTI-STEP panoptic PNGs are uint8 RGB [H,W,3], got {rgb.shape} {rgb.dtype}"
        )
    sem = rgb[..., 0].astype(np.int64)
    inst = rgb[..., 1].astype(np.int64) * 256 + rgb[..., 2].astype(np.int64)
    void = sem == ignore_label
    top = int(inst[~void].max(initial=0))
    if top >= label_divisor:
        raise PanopticFormatError(
            f"instance id {top} does not fit below label_divisor {label_divisor}"
        )
    return np.where(void, ignore_label * label_divisor, sem * label_divisor + inst)


def encode_kitti_step(panoptic: np.ndarray, label_divisor: int = 1000) -> np.ndarray:
    """int [H,W] panoptic ids -> uint8 [H,W,3]: R = semantic, G = inst // 256, B = inst % 256."""
    sem, inst = split_ids(panoptic, label_divisor)
    if sem.max(initial=0) > 255 or inst.max(initial=0) > 65535:
        raise ValueError(
            f"KITTI-STEP PNGs hold semantic <= 255 and instance <= 65535, got max "
            f"{int(sem.max())} and {int(inst.max())}"
        )
    return np.stack([sem, inst // 256, inst % 256], axis=-1).astype(np.uint8)


def read_kitti_step(
    path: str | Path, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """Read a KITTI-STEP panoptic PNG -> int64 [H, W] panoptic ids."""
    try:
        return decode_kitti_step(read_png(path), label_divisor, ignore_label)
    except PanopticFormatError as e:
        raise PanopticFormatError(f"{path}: {e}") from None


def write_kitti_step(path: str | Path, panoptic: np.ndarray, label_divisor: int = 1000) -> Path:
    return write_png(path, encode_kitti_step(panoptic, label_divisor))
