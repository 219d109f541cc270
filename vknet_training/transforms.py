"""Clip-consistent data augmentation (video_knet.md §6.1, §4.5).

A *clip* is a list of T frames that must be augmented identically (Video K-Net trains on a key
frame and one reference frame, T = 2): one shared resize scale, one flip decision and one crop
offset for all of them, so an instance's mask moves consistently across the clip.

Functional core first (``resize_clip``, ``hflip_clip``, ``crop_clip``, ``pad_clip``,
``normalize``), each a pure function of the frames and explicit parameters; then thin random
wrappers (``RandomResize``, ``RandomHFlip``, ``RandomCrop``) that only draw their parameters
once per clip from a ``numpy.random.Generator`` and call the functional form.

Frames: ``images`` are uint8 [H, W, 3] RGB arrays, ``panoptics`` int64 [H, W] arrays holding
``semantic * label_divisor + instance`` (void = ``ignore_label * label_divisor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

Clip = tuple[list[np.ndarray], list[np.ndarray]]  # (images, panoptics)


def _check_clip(images: Sequence[np.ndarray], panoptics: Sequence[np.ndarray]) -> tuple[int, int]:
    """Validate a clip and return its common (H, W)."""
    if len(images) == 0 or len(images) != len(panoptics):
        raise ValueError(
            f"a clip needs the same non-zero number of images and panoptic maps, got "
            f"{len(images)} images and {len(panoptics)} panoptic maps"
        )
    h, w = images[0].shape[:2]
    for t, (img, pan) in enumerate(zip(images, panoptics)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frame {t}: image must be HxWx3 uint8, got {img.shape} {img.dtype}")
        if pan.ndim != 2 or not np.issubdtype(pan.dtype, np.integer):
            raise ValueError(
                f"frame {t}: panoptic must be HxW integer, got {pan.shape} {pan.dtype}"
            )
        if img.shape[:2] != (h, w) or pan.shape != (h, w):
            raise ValueError(
                f"frame {t}: all frames of a clip must share one size {(h, w)}, got image "
                f"{img.shape[:2]} and panoptic {pan.shape}"
            )
    return h, w


# ----------------------------------------------------------------------------- functional core


def keep_ratio_scale(size: tuple[int, int], target: tuple[int, int], ratio: float = 1.0) -> float:
    """Scale factor of an mmdet keep-ratio resize to ``target`` x ``ratio``.

    The image (h, w) is scaled so that its long edge fits ``max(target) * ratio`` and its short
    edge fits ``min(target) * ratio`` (mmcv ``rescale_size``), e.g. KITTI 375x1242 with target
    (384, 1248) gives 1.0048 at ratio 1.
    """
    h, w = size
    long_t, short_t = max(target) * ratio, min(target) * ratio
    return float(min(long_t / max(h, w), short_t / min(h, w)))


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for a nearest resize (pixel-centre convention)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_clip(
    images: Sequence[np.ndarray], panoptics: Sequence[np.ndarray], scale: float
) -> Clip:
    """Resize every frame by the same ``scale`` (bilinear image, nearest panoptic).

    Output size is ``(round(H * scale), round(W * scale))``, at least 1x1.
    """
    h, w = _check_clip(images, panoptics)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) == (h, w):
        return list(images), list(panoptics)
    rows, cols = _nearest_index(h, nh), _nearest_index(w, nw)
    out_img = [cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) for img in images]
    out_pan = [pan[rows][:, cols] for pan in panoptics]
    return out_img, out_pan


def hflip_clip(images: Sequence[np.ndarray], panoptics: Sequence[np.ndarray]) -> Clip:
    """Mirror every frame left-right."""
    _check_clip(images, panoptics)
    return (
        [np.ascontiguousarray(img[:, ::-1]) for img in images],
        [np.ascontiguousarray(pan[:, ::-1]) for pan in panoptics],
    )


def crop_clip(
    images: Sequence[np.ndarray],
    panoptics: Sequence[np.ndarray],
    top: int,
    left: int,
    height: int,
    width: int,
) -> Clip:
    """Cut the same window [top:top+height, left:left+width] out of every frame."""
    h, w = _check_clip(images, panoptics)
    if top < 0 or left < 0 or height <= 0 or width <= 0 or top + height > h or left + width > w:
        raise ValueError(
            f"crop window top={top} left={left} {height}x{width} does not fit a {h}x{w} frame"
        )
    sl = (slice(top, top + height), slice(left, left + width))
    return [img[sl].copy() for img in images], [pan[sl].copy() for pan in panoptics]


def padded_size(size: tuple[int, int], divisor: int = 32) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``divisor``."""
    h, w = size
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


def pad_clip(
    images: Sequence[np.ndarray],
    panoptics: Sequence[np.ndarray],
    void_value: int,
    divisor: int = 32,
) -> Clip:
    """Pad every frame bottom/right to a multiple of ``divisor``.

    Images are padded with 0; panoptic maps with ``void_value`` (``ignore_label * divisor``),
    so padding carries no mask and is ignored by the semantic loss. Normalise *before* padding
    when the padding should be 0 in normalised space (as mmdet's Normalize -> Pad does): use
    ``pad_tensor`` on the normalised image instead.
    """
    h, w = _check_clip(images, panoptics)
    ph, pw = padded_size((h, w), divisor)
    if (ph, pw) == (h, w):
        return list(images), list(panoptics)
    out_img, out_pan = [], []
    for img, pan in zip(images, panoptics):
        pi = np.zeros((ph, pw, 3), dtype=img.dtype)
        pi[:h, :w] = img
        pp = np.full((ph, pw), void_value, dtype=pan.dtype)
        pp[:h, :w] = pan
        out_img.append(pi)
        out_pan.append(pp)
    return out_img, out_pan


def pad_tensor(x: Tensor, size: tuple[int, int], value: float = 0.0) -> Tensor:
    """Pad the last two dims of ``x`` bottom/right to ``size`` = (H, W) with ``value``."""
    h, w = x.shape[-2:]
    if h > size[0] or w > size[1]:
        raise ValueError(f"cannot pad a {h}x{w} tensor to the smaller size {size}")
    return torch.nn.functional.pad(x, (0, size[1] - w, 0, size[0] - h), value=value)


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 [H, W, 3] RGB -> float32 Tensor[3, H, W] ``(image - mean) / std``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    x = image.transpose(2, 0, 1).astype(np.float32)  # [3, H, W]
    x -= m
    x /= s
    return torch.from_numpy(x)


# ----------------------------------------------------------------------------- random wrappers


@dataclass(frozen=True)
class RandomResize:
    """Keep-ratio resize to ``target`` x r with r ~ U[ratio_range], one r per clip.

    ``target`` is the (H, W) box of video_knet.md §6.1 (the crop size there: (384, 1248)).
    """

    target: tuple[int, int]
    ratio_range: tuple[float, float] = (0.5, 2.0)

    def draw(self, size: tuple[int, int], rng: np.random.Generator) -> float:
        lo, hi = self.ratio_range
        r = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
        return keep_ratio_scale(size, self.target, r)

    def __call__(
        self,
        images: Sequence[np.ndarray],
        panoptics: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> Clip:
        h, w = _check_clip(images, panoptics)
        return resize_clip(images, panoptics, self.draw((h, w), rng))


@dataclass(frozen=True)
class RandomHFlip:
    """Flip the whole clip with probability ``p`` (one draw per clip)."""

    p: float = 0.5

    def __call__(
        self,
        images: Sequence[np.ndarray],
        panoptics: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> Clip:
        if rng.random() < self.p:
            return hflip_clip(images, panoptics)
        _check_clip(images, panoptics)
        return list(images), list(panoptics)


@dataclass(frozen=True)
class RandomCrop:
    """Crop ``size`` = (H, W) at one random offset for the whole clip.

    A dimension smaller than the crop is kept whole (mmdet RandomCrop: no crop if smaller).
    """

    size: tuple[int, int]

    def draw(self, hw: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the window for a frame of size ``hw``."""
        h, w = hw
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return top, left, ch, cw

    def __call__(
        self,
        images: Sequence[np.ndarray],
        panoptics: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> Clip:
        hw = _check_clip(images, panoptics)
        return crop_clip(images, panoptics, *self.draw(hw, rng))


__all__ = [
    "Clip",
    "RandomCrop",
    "RandomHFlip",
    "RandomResize",
    "crop_clip",
    "hflip_clip",
    "keep_ratio_scale",
    "normalize",
    "pad_clip",
    "pad_tensor",
    "padded_size",
    "resize_clip",
]
