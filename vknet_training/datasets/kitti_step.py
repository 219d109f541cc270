"""KITTI-STEP reader (video_knet.md §8.1, metrics.md §4).

Layout (the official flattened layout of ``scripts/kitti_step_prepare.py``)::

    root/video_sequence/{split}/{seq:06d}_{frame:06d}_leftImg8bit.png   RGB image
    root/video_sequence/{split}/{seq:06d}_{frame:06d}_panoptic.png      R = semantic train id,
                                                                        G * 256 + B = instance id

The panoptic PNG decodes to ``semantic * 1000 + instance`` (void: R = 255 -> 255 * 1000).
Frames without a panoptic PNG (the test split) are readable with ``read_image`` only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vknet_core.panoptic_io import decode_kitti_step
from vknet_training.datasets.base import (
    LABEL_DIVISOR,
    DatasetFormatError,
    VideoReader,
    check_same_size,
    read_rgb,
    read_rgb_png_u8,
)

IMAGE_SUFFIX = "_leftImg8bit.png"
PANOPTIC_SUFFIX = "_panoptic.png"
_NAME = re.compile(r"^(\d{6})_(\d{6})_leftImg8bit\.png$")


class KittiStepVideo(VideoReader):
    """Frames of one KITTI-STEP split; ``seq`` is the sequence number, ``idx`` its position.

    Args:
        root: dataset root holding ``video_sequence/{split}/``.
        split: ``train``, ``val`` or ``test`` (any folder name under ``video_sequence``).
        require_labels: raise at construction if a frame lacks its panoptic PNG.
    """

    def __init__(self, root: str | Path, split: str = "train", require_labels: bool = True):
        self.root = Path(root)
        self.split = split
        folder = self.root / "video_sequence" / split
        if not folder.is_dir():
            raise DatasetFormatError(
                f"KITTI-STEP split folder not found: {folder} (expected "
                f"root/video_sequence/{split}/{{seq:06d}}_{{frame:06d}}_leftImg8bit.png)"
            )
        frames: dict[int, list[int]] = {}
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m:
                frames.setdefault(int(m.group(1)), []).append(int(m.group(2)))
        if not frames:
            raise DatasetFormatError(
                f"no KITTI-STEP frames in {folder} (expected files named "
                f"{{seq:06d}}_{{frame:06d}}{IMAGE_SUFFIX})"
            )
        self.folder = folder
        self._frames = {s: sorted(f) for s, f in sorted(frames.items())}
        if require_labels:
            missing = [
                self._path(s, f, PANOPTIC_SUFFIX)
                for s, fs in self._frames.items()
                for f in fs
                if not self._path(s, f, PANOPTIC_SUFFIX).is_file()
            ]
            if missing:
                raise DatasetFormatError(
                    f"{len(missing)} KITTI-STEP frames in {folder} have no panoptic PNG, e.g. "
                    f"{missing[0]} (expected beside each {IMAGE_SUFFIX}; pass "
                    f"require_labels=False for an unlabelled split)"
                )

    def _path(self, seq: int, frame: int, suffix: str) -> Path:
        return self.folder / f"{seq:06d}_{frame:06d}{suffix}"

    def sequences(self) -> list[int]:
        return list(self._frames)

    def num_frames(self, seq: int) -> int:
        if seq not in self._frames:
            raise KeyError(f"sequence {seq} not in {self.folder}; available: {list(self._frames)}")
        return len(self._frames[seq])

    def frame_id(self, seq: int, idx: int) -> int:
        """The frame number in the file name of frame ``idx`` of ``seq``."""
        self._check_index(seq, idx)
        return self._frames[seq][idx]

    def frame_name(self, seq: int, idx: int) -> str:
        return f"{seq:06d}_{self.frame_id(seq, idx):06d}"

    def frame_paths(self, seq: int, idx: int) -> tuple[Path, Path]:
        f = self.frame_id(seq, idx)
        return self._path(seq, f, IMAGE_SUFFIX), self._path(seq, f, PANOPTIC_SUFFIX)

    def read_panoptic(self, seq: int, idx: int) -> np.ndarray:
        """Only the panoptic map of a frame: int64 [H, W] sem*1000+inst."""
        _, lab_path = self.frame_paths(seq, idx)
        rgb = read_rgb_png_u8(lab_path, "KITTI-STEP panoptic")
        try:
            return decode_kitti_step(rgb, LABEL_DIVISOR, self.ignore_label)
        except ValueError as e:
            raise DatasetFormatError(f"{lab_path}: {e}") from None

    def read_frame(self, seq: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, lab_path = self.frame_paths(seq, idx)
        image = read_rgb(img_path)
        panoptic = self.read_panoptic(seq, idx)
        check_same_size(image, panoptic, img_path, lab_path)
        return image, panoptic


__all__ = ["KittiStepVideo"]
