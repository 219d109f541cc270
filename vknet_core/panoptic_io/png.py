"""Image and label files as arrays: the one image reader of the project (datasets, evaluation,
offline tools), lossless PNG writing, and the ``sem * label_divisor + inst`` split.

Errors are ``PanopticFormatError`` (a ValueError) naming the file, what it should have been and
what it is.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class PanopticFormatError(ValueError):
    """An image or panoptic label file (or folder) does not have the expected format."""


def read_image(path: str | Path, what: str = "PNG", expected: str = "a PNG image") -> np.ndarray:
    """An image file as stored: uint8/uint16 [H, W], or [H, W, 3] in R, G, B order (an alpha
    channel is dropped). ``what``/``expected`` name the file's role in the error messages."""
    path = Path(path)
    if not path.is_file():
        raise PanopticFormatError(f"{what} file not found: {path}")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise PanopticFormatError(f"cannot decode {what} file {path} (expected {expected})")
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr[:, :, 2::-1])  # BGR(A) -> RGB
    return arr


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as stored: uint8/uint16 [H, W] or uint8 [H, W, 3] in R, G, B order."""
    return read_image(path)


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """An 8-bit colour image file (PNG/JPEG) -> uint8 [H, W, 3] RGB."""
    img = read_image(path, what, "a PNG/JPEG image")
    if img.dtype != np.uint8 or img.ndim != 3:
        raise PanopticFormatError(
            f"{path}: expected an 8-bit RGB image, got shape {img.shape} dtype {img.dtype}"
        )
    return img


def read_rgb_png_u8(path: str | Path, what: str) -> np.ndarray:
    """A 3-channel uint8 PNG (a colour-coded label map) -> uint8 [H, W, 3] in R, G, B order."""
    arr = read_image(path, what)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise PanopticFormatError(
            f"{path}: {what} must be a 3-channel uint8 PNG, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    return arr


def read_single_channel_png(path: str | Path, what: str) -> np.ndarray:
    """A single-channel (8 or 16 bit) PNG -> int64 [H, W]."""
    arr = read_image(path, what)
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise PanopticFormatError(
            f"{path}: {what} must be a single-channel 8/16-bit PNG, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    return arr.astype(np.int64)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write uint8 [H, W, 3] RGB or uint8/uint16 [H, W] losslessly; creates parent folders."""
    path = Path(path)
    if image.ndim == 3 and image.dtype == np.uint8:
        image = np.ascontiguousarray(image[:, :, ::-1])
    elif not (image.ndim == 2 and image.dtype in (np.uint8, np.uint16)):
        raise ValueError(
            f"write_png takes uint8 [H,W,3] or uint8/uint16 [H,W], got {image.shape} {image.dtype}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


def split_ids(panoptic: np.ndarray, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """int [H, W] panoptic ids -> (semantic, instance), both int64 [H, W]."""
    p = np.asarray(panoptic)
    if not np.issubdtype(p.dtype, np.integer):
        raise TypeError(f"panoptic ids must be integers, got dtype {p.dtype}")
    if p.ndim != 2:
        raise ValueError(f"expected a panoptic map [H,W], got shape {p.shape}")
    p = p.astype(np.int64)
    if p.size and p.min() < 0:
        raise ValueError(f"panoptic ids must be >= 0, got min {int(p.min())}")
    return p // label_divisor, p % label_divisor
