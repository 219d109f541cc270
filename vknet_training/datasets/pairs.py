"""Key/reference frame pairs with identical augmentation and stride-2 targets (video_knet.md §4.5,
§5.1, §6.1). B batch, M targets of a frame, Hp x Wp padded image.

``PairDataset[i]`` takes key frame i of the split (all frames of all sequences, in order), draws
a reference offset from ``offsets`` among those that stay inside the sequence, reads both frames,
augments them with one shared scale / flip / crop (``vknet_training.transforms``), normalises,
pads to /32, and builds the training targets of each frame:

- ``masks`` float32 [M, Hp/2, Wp/2]: soft binary masks at stride 2 (bilinear /2 = 2x2 mean);
- ``labels`` int64 [M]: model labels (things first, ``cfg.labels.train_to_model_id``);
- ``instance_ids`` int64 [M]: the panoptic id ``sem * 1000 + inst`` of thing instances, -1 for
  stuff; ``is_thing`` bool [M]; thing entries first (ascending id), then one entry per present
  stuff class (ascending model label);
- ``sem_seg`` int64 [Hp/2, Wp/2]: model label per pixel, 255 on void and padding.

``meta`` holds ``seq``, ``key_index``, ``ref_index``, ``image_size`` (the unpadded (h, w)) and
the augmentation drawn: ``scale``, ``flip``, ``crop`` ((top, left, h, w) of the resized frame).

Thing pixels with instance 0 (crowd / untracked) get no thing target but keep their class in
``sem_seg``. A key frame without any thing instance after augmentation, or whose instances are
all absent from the reference, is replaced by another key frame drawn from a generator seeded
with (seed, epoch, i), so every item is a deterministic function of (seed, epoch, i) - the same
in a single process, in any DataLoader worker and under DDP.

Deviation from the official loader: the official dataset draws one offset per key frame in its
constructor and drops key frames whose offset leaves the sequence; here the offset is drawn per
epoch among the valid ones, so edge frames are kept and pairs vary across epochs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vknet_core.config import LabelConfig, VKNetConfig
from vknet_training.datasets.base import VideoReader
from vknet_training.transforms import (
    RandomCrop,
    RandomHFlip,
    RandomResize,
    crop_clip,
    hflip_clip,
    keep_ratio_scale,
    normalize,
    pad_tensor,
    padded_size,
    resize_clip,
)

log = logging.getLogger(__name__)


def thing_ids(panoptic: np.ndarray, labels: LabelConfig, divisor: int = 1000) -> np.ndarray:
    """Sorted panoptic ids of the thing instances (thing class, instance > 0) in a map."""
    sem, inst = panoptic // divisor, panoptic % divisor
    is_thing = np.isin(sem, labels.thing_train_ids) & (inst > 0)
    return np.unique(panoptic[is_thing])


def build_targets(
    panoptic: np.ndarray, labels: LabelConfig, divisor: int = 1000
) -> dict[str, Tensor]:
    """Training targets of one frame from its padded panoptic map.

    Args:
        panoptic: int64 [Hp, Wp], ``sem * divisor + inst``, void/padding ``ignore * divisor``;
            Hp and Wp even.
        labels: the model's label space.
    Returns:
        dict with ``masks`` [M, Hp/2, Wp/2] float32, ``labels`` [M] int64 (model labels),
        ``instance_ids`` [M] int64, ``is_thing`` [M] bool, ``sem_seg`` [Hp/2, Wp/2] int64.
    """
    hp, wp = panoptic.shape
    if hp % 2 or wp % 2:
        raise ValueError(f"padded panoptic map must have even sides, got {hp}x{wp}")
    sem = panoptic // divisor
    ignore = labels.ignore_label
    to_model = labels.train_to_model_id
    things = set(labels.thing_train_ids)

    sem2 = sem[::2, ::2]  # nearest /2
    sem_model = np.full(sem2.shape, 255, dtype=np.int64)  # [Hp/2, Wp/2]
    for t in np.unique(sem2):
        if int(t) != ignore:
            sem_model[sem2 == t] = to_model[int(t)]

    ids = thing_ids(panoptic, labels, divisor)
    stuff = sorted(
        to_model[int(t)] for t in np.unique(sem) if int(t) != ignore and int(t) not in things
    )
    model_to_train = labels.model_to_train_id
    # soft masks at stride 2: bilinear /2 (align_corners=False) is exactly the 2x2 block mean
    pan_q = [panoptic[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]  # 4 x [Hp/2, Wp/2]
    sem_q = [q // divisor for q in pan_q]
    masks = np.zeros((len(ids) + len(stuff), hp // 2, wp // 2), dtype=np.float32)
    for k, i in enumerate(ids):
        masks[k] = sum((q == i).astype(np.uint8) for q in pan_q)
    for k, m in enumerate(stuff, start=len(ids)):
        masks[k] = sum((q == model_to_train[m]).astype(np.uint8) for q in sem_q)
    masks *= 0.25  # [M, Hp/2, Wp/2]
    return {
        "masks": torch.from_numpy(masks),
        "labels": torch.tensor(
            [to_model[int(i) // divisor] for i in ids] + stuff, dtype=torch.int64
        ),
        "instance_ids": torch.tensor([int(i) for i in ids] + [-1] * len(stuff), dtype=torch.int64),
        "is_thing": torch.tensor([True] * len(ids) + [False] * len(stuff), dtype=torch.bool),
        "sem_seg": torch.from_numpy(sem_model),
    }


class PairDataset(Dataset):
    """Key + reference frame pairs of a video reader, augmented identically.

    Args:
        video_reader: any ``VideoReader`` (KITTI-STEP, Cityscapes-VPS, VIPSeg, synthetic data).
        cfg: the model config; its ``labels`` define thing classes and model label order,
            ``pixel_mean``/``pixel_std`` the normalisation and ``size_divisor`` the padding.
        crop: (H, W) crop size, also the keep-ratio resize target (official: (384, 1248)).
        scale: resize ratio range r ~ U[scale] applied to the crop-size target (train only).
        offsets: reference-frame offsets relative to the key frame.
        train: random scale/flip/crop; otherwise a deterministic keep-ratio fit into ``crop``.
        seed: base seed of all random draws.
        max_attempts: resampling attempts before giving up with a RuntimeError.
    """

    def __init__(
        self,
        video_reader: VideoReader,
        cfg: VKNetConfig,
        crop: tuple[int, int] = (384, 1248),
        scale: tuple[float, float] = (0.5, 2.0),
        offsets: Sequence[int] = (-2, -1, 1, 2),
        train: bool = True,
        seed: int = 0,
        max_attempts: int = 100,
    ):
        if len(crop) != 2 or min(crop) <= 0:
            raise ValueError(f"crop must be (H, W) > 0, got {crop}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        if not offsets or 0 in offsets:
            raise ValueError(f"offsets must be non-empty and non-zero, got {tuple(offsets)}")
        self.reader = video_reader
        self.cfg = cfg
        self.labels = cfg.labels
        self.crop = (int(crop[0]), int(crop[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.offsets = tuple(int(o) for o in offsets)
        self.train = train
        self.seed = int(seed)
        self.max_attempts = int(max_attempts)
        self.epoch = 0
        self.keys: list[tuple[int, int]] = []
        self._lengths: dict[int, int] = {}
        for seq in video_reader.sequences():
            n = video_reader.num_frames(seq)
            self._lengths[seq] = n
            self.keys += [(seq, k) for k in range(n) if self._valid_offsets(seq, k)]
        if not self.keys:
            raise ValueError(
                f"{video_reader!r} has no frame with a reference frame at offsets "
                f"{self.offsets}: every sequence is too short or the split is empty"
            )
        self._resize = RandomResize(self.crop, self.scale)
        self._flip = RandomHFlip(0.5)
        self._crop = RandomCrop(self.crop)
        self._no_things: set[tuple[int, int]] = set()  # key frames known to have no instance

    def set_epoch(self, epoch: int) -> None:
        """Make the augmentation and offsets of the next pass depend on ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.keys)

    def _valid_offsets(self, seq: int, k: int) -> list[int]:
        n = self._lengths[seq]
        return [o for o in self.offsets if 0 <= k + o < n]

    def _check_labels(self, panoptic: np.ndarray, seq: int, idx: int) -> None:
        sem = np.unique(panoptic // self.reader.label_divisor)
        bad = [
            int(s)
            for s in sem
            if s != self.labels.ignore_label and not 0 <= s < self.labels.num_classes
        ]
        if bad:
            raise ValueError(
                f"{self.reader.frame_paths(seq, idx)[1]}: semantic ids {bad} are outside the "
                f"{self.labels.num_classes} classes of config {self.cfg.name!r} "
                f"(expected 0..{self.labels.num_classes - 1} or {self.labels.ignore_label})"
            )

    def _augment(
        self, images: list[np.ndarray], panoptics: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
        """One scale, flip and crop drawn once and applied to every frame of the pair."""
        hw = images[0].shape[:2]
        if not self.train:
            s = keep_ratio_scale(hw, self.crop, 1.0)
            images, panoptics = resize_clip(images, panoptics, s)
            return images, panoptics, {"scale": s, "flip": False, "crop": None}
        s = self._resize.draw(hw, rng)
        images, panoptics = resize_clip(images, panoptics, s)
        flip = bool(rng.random() < self._flip.p)
        if flip:
            images, panoptics = hflip_clip(images, panoptics)
        window = self._crop.draw(images[0].shape[:2], rng)
        images, panoptics = crop_clip(images, panoptics, *window)
        return images, panoptics, {"scale": s, "flip": flip, "crop": window}

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.keys):
            raise IndexError(f"index {i} out of range for {len(self.keys)} key frames")
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, i])
        divisor = self.reader.label_divisor
        j = i
        for _ in range(self.max_attempts):
            seq, k = self.keys[j]
            offs = self._valid_offsets(seq, k)
            r = k + offs[int(rng.integers(len(offs)))]  # drawn first: the cache never shifts draws
            if (seq, k) not in self._no_things:
                img_k, pan_k = self.reader.read_frame(seq, k)
                self._check_labels(pan_k, seq, k)
                if len(thing_ids(pan_k, self.labels, divisor)) == 0:
                    self._no_things.add((seq, k))
                else:
                    img_r, pan_r = self.reader.read_frame(seq, r)
                    self._check_labels(pan_r, seq, r)
                    if img_r.shape != img_k.shape:
                        raise ValueError(
                            f"key frame {self.reader.frame_paths(seq, k)[0]} is "
                            f"{img_k.shape[:2]} but reference frame "
                            f"{self.reader.frame_paths(seq, r)[0]} is {img_r.shape[:2]}"
                        )
                    images, pans, aug = self._augment([img_k, img_r], [pan_k, pan_r], rng)
                    key_ids = thing_ids(pans[0], self.labels, divisor)
                    ref_ids = thing_ids(pans[1], self.labels, divisor)
                    if len(np.intersect1d(key_ids, ref_ids)):
                        return self._make_item(images, pans, seq, k, r, aug)
            j = int(rng.integers(len(self.keys)))
        raise RuntimeError(
            f"no usable key/reference pair after {self.max_attempts} attempts from index {i}: "
            f"key frames need a thing instance ({self.labels.thing_train_ids}) that is also "
            f"present in the reference frame after cropping to {self.crop}"
        )

    def _make_item(
        self,
        images: list[np.ndarray],
        pans: list[np.ndarray],
        seq: int,
        k: int,
        r: int,
        aug: dict[str, Any],
    ) -> dict[str, Any]:
        h, w = images[0].shape[:2]
        hp, wp = padded_size((h, w), self.cfg.size_divisor)
        void = self.labels.ignore_label * self.reader.label_divisor
        out: dict[str, Any] = {}
        for name, img, pan in zip(("key", "ref"), images, pans):
            x = np.zeros((3, hp, wp), dtype=np.float32)  # padding = 0 after normalising
            x[:, :h, :w] = normalize(img, self.cfg.pixel_mean, self.cfg.pixel_std).numpy()
            out[f"image_{name}"] = torch.from_numpy(x)  # [3, Hp, Wp]
            padded = np.full((hp, wp), void, dtype=np.int64)
            padded[:h, :w] = pan
            out[f"targets_{name}"] = build_targets(padded, self.labels, self.reader.label_divisor)
        out["meta"] = {"seq": seq, "key_index": k, "ref_index": r, "image_size": (h, w), **aug}
        return out


def collate_pairs(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of ``PairDataset`` items.

    Images are padded bottom/right to the largest item (0) and stacked to [B, 3, Hp, Wp];
    targets stay per-item lists, their ``masks`` padded with 0 and ``sem_seg`` with 255 to
    [.., Hp/2, Wp/2]; ``meta`` becomes a list.
    """
    if not batch:
        raise ValueError("collate_pairs got an empty batch")
    hp = max(b["image_key"].shape[-2] for b in batch)
    wp = max(b["image_key"].shape[-1] for b in batch)
    out: dict[str, Any] = {"meta": [b["meta"] for b in batch]}
    for name in ("key", "ref"):
        out[f"image_{name}"] = torch.stack(
            [pad_tensor(b[f"image_{name}"], (hp, wp), 0.0) for b in batch]
        )
        targets = []
        for b in batch:
            t = dict(b[f"targets_{name}"])
            t["masks"] = pad_tensor(t["masks"], (hp // 2, wp // 2), 0.0)
            t["sem_seg"] = pad_tensor(t["sem_seg"], (hp // 2, wp // 2), 255)
            targets.append(t)
        out[f"targets_{name}"] = targets
    return out


__all__ = ["PairDataset", "build_targets", "collate_pairs", "thing_ids"]
