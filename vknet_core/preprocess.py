"""Camera frame -> network input (keep-ratio resize + bottom/right pad) and the way back.

H x W camera image, Hr x Wr resized image (official ``img_shape``), Hp x Wp network input
(official ``batch_input_shape``, multiples of 32). Masks go back exactly like the official
``rescale_masks`` (video_knet.md §7.2): bilinear to (Hp, Wp), crop to (Hr, Wr), bilinear to
(H, W), all with ``align_corners=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vknet_core.config import IMAGENET_MEAN

# Native network input (H, W) of each preset family: the official test scale (video_knet.md),
# also the default bound on the network size of the live pipeline. Unknown names -> KITTI-STEP.
NATIVE_HW: dict[str, tuple[int, int]] = {
    "kitti_step": (384, 1248),
    "cityscapes_vps": (1024, 2048),
    "vipseg": (736, 1280),
}


def native_hw(model_name: str) -> tuple[int, int]:
    """(H, W) the preset ``model_name`` was trained and tested at (KITTI-STEP's when unknown)."""
    for prefix, hw in NATIVE_HW.items():
        if model_name.startswith(prefix):
            return hw
    return NATIVE_HW["kitti_step"]


# Padding colour: the official pipeline pads the *normalised* image with 0, i.e. the pixel mean.
MEAN_PAD: tuple[int, int, int] = tuple(int(round(m)) for m in IMAGENET_MEAN)  # type: ignore


@dataclass(frozen=True)
class PreprocessConfig:
    """net_hw: network input (H, W), multiples of ``size_divisor``; None = the camera size padded
    up to a multiple of ``size_divisor`` (no resize, as the official KITTI-STEP test)."""

    net_hw: Optional[tuple[int, int]] = None
    # with net_hw None: a frame larger than this (H, W) bound is first resized down, keeping its
    # aspect, like mmdet's keep-ratio Resize: long side <= max(max_hw), short side <= min(max_hw)
    # (a 1280x720 frame under (384, 1248) runs at 384x683, padded to 384x704). None = unbounded.
    max_hw: Optional[tuple[int, int]] = None
    size_divisor: int = 32
    pad_value: tuple[int, int, int] = MEAN_PAD
    # False: a frame that fits inside net_hw is only padded (the official test never resizes,
    # and the masks then need no resize back); True: smaller frames are enlarged to fill it.
    upscale: bool = False


@dataclass(frozen=True)
class Letterbox:
    """How a camera frame was fitted into the network input.

    orig_hw: (H, W) camera size; resized_hw: (Hr, Wr) after the keep-ratio resize;
    pad_hw: (Hp, Wp) network input size (image at the top-left, padding bottom/right).
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    pad_hw: tuple[int, int]

    @property
    def scale(self) -> float:
        return self.resized_hw[0] / self.orig_hw[0]

    @staticmethod
    def identity(hw: tuple[int, int]) -> Letterbox:
        return Letterbox(tuple(hw), tuple(hw), tuple(hw))  # type: ignore[arg-type]

    def to_original(self, maps: Tensor) -> Tensor:
        """Map network-space maps back to the camera frame (official ``rescale_masks``).

        maps: Tensor[..., h, w] float, any resolution covering the padded input
               (e.g. stride 2 or 8).
        Returns Tensor[..., H, W] float.
        """
        if maps.dim() < 2:
            raise ValueError(f"maps must be [..., h, w], got shape {tuple(maps.shape)}")
        lead = maps.shape[:-2]
        x = maps.reshape(1, -1, *maps.shape[-2:])  # [1, M, h, w]
        x = F.interpolate(x, size=self.pad_hw, mode="bilinear", align_corners=False)
        x = x[:, :, : self.resized_hw[0], : self.resized_hw[1]]
        if self.resized_hw != self.orig_hw:  # a same-size bilinear resize is the identity
            x = F.interpolate(x, size=self.orig_hw, mode="bilinear", align_corners=False)
        return x.reshape(*lead, *self.orig_hw)


def fit_size(
    orig_hw: tuple[int, int], cfg: PreprocessConfig
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(resized_hw, pad_hw) for a camera size under ``cfg``."""
    h, w = orig_hw
    d = cfg.size_divisor
    if cfg.net_hw is None:
        if cfg.max_hw is not None:
            lo, hi = sorted(cfg.max_hw)
            scale = min(1.0, hi / max(h, w), lo / min(h, w))
            if scale < 1.0:
                h, w = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        return (h, w), (-(-h // d) * d, -(-w // d) * d)
    ph, pw = cfg.net_hw
    if ph % d or pw % d or ph <= 0 or pw <= 0:
        raise ValueError(f"net_hw must be positive multiples of {d}, got {cfg.net_hw}")
    scale = min(ph / h, pw / w)
    if not cfg.upscale:
        scale = min(scale, 1.0)
    rh = min(ph, max(1, int(h * scale + 0.5)))
    rw = min(pw, max(1, int(w * scale + 0.5)))
    return (rh, rw), (ph, pw)


def to_model_input(
    rgb: np.ndarray, cfg: PreprocessConfig = PreprocessConfig()
) -> tuple[np.ndarray, Letterbox]:
    """Camera RGB -> network input.

    rgb: np.ndarray[H, W, 3] uint8 RGB.
    Returns (image np.ndarray[1, Hp, Wp, 3] uint8 RGB, Letterbox).
    """
    if (
        not isinstance(rgb, np.ndarray)
        or rgb.dtype != np.uint8
        or rgb.ndim != 3
        or rgb.shape[2] != 3
    ):
        got = (rgb.shape, rgb.dtype) if isinstance(rgb, np.ndarray) else type(rgb)
        raise ValueError(f"image must be an HxWx3 uint8 RGB array, got {got}")
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image must be non-empty, got shape {rgb.shape}")
    (rh, rw), (ph, pw) = fit_size((h, w), cfg)
    img = rgb if (rh, rw) == (h, w) else cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
    out = np.empty((1, ph, pw, 3), np.uint8)
    out[0] = np.asarray(cfg.pad_value, np.uint8)
    out[0, :rh, :rw] = img
    return out, Letterbox((h, w), (rh, rw), (ph, pw))


def letterbox_from_meta(img_meta: np.ndarray | list[int]) -> Letterbox:
    """Official ``[img_h, img_w, pad_h, pad_w, ori_h, ori_w]`` (parity files) -> Letterbox."""
    ih, iw, ph, pw, oh, ow = (int(v) for v in img_meta)
    return Letterbox((oh, ow), (ih, iw), (ph, pw))


def as_tensor(x: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
    return (
        x.to(device)
        if isinstance(x, Tensor)
        else torch.from_numpy(np.ascontiguousarray(x)).to(device)
    )
