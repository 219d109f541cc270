"""What every video dataset reader provides, plus checked image I/O.

A reader turns one dataset layout into the common frame format of DESIGN.md §3.3:
``read_frame(seq, idx) -> (rgb uint8 [H, W, 3], panoptic int64 [H, W])`` with
``panoptic = semantic_train_id * 1000 + instance_id`` and void ``255 * 1000``. Instance 0 on a
thing class is a crowd / untracked region (STQ treats it as crowd). ``seq`` is an integer
sequence key from ``sequences()``, ``idx`` the 0-based position of a frame in that sequence's
sorted, annotated frames.
"""
from __future__ import annotations

import abc
from pathlib import Path

import cv2
import numpy as np

LABEL_DIVISOR = 1000
IGNORE_LABEL = 255
VOID = IGNORE_LABEL * LABEL_DIVISOR


class DatasetFormatError(ValueError):
    """A dataset file is missing or does not have the expected format."""


def _imread(path: Path, what: str, expected: str) -> np.ndarray:
    """cv2.imread as stored (any depth/channels), with errors naming the file and the kind."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{what} file not found: {path}")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DatasetFormatError(f"cannot decode {what} file {path} (expected {expected})")
    return arr


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit colour image file -> uint8 [H, W, 3] RGB, with a clear error if it is not one."""
    img = _imread(path, "image", "a PNG/JPEG image")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DatasetFormatError(
            f"{path}: expected an 8-bit RGB image, got shape {img.shape} dtype {img.dtype}"
        )
    return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB


def read_rgb_png_u8(path: Path, what: str) -> np.ndarray:
    """A 3-channel uint8 PNG (a label map) -> uint8 [H, W, 3] in R, G, B order."""
    arr = _imread(path, what, "a PNG")
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DatasetFormatError(
            f"{path}: {what} must be a 3-channel uint8 PNG, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr[:, :, ::-1])


def read_single_channel_png(path: Path, what: str) -> np.ndarray:
    """A single-channel (8 or 16 bit) PNG -> int64 [H, W]."""
    arr = _imread(path, what, "a PNG")
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise DatasetFormatError(
            f"{path}: {what} must be a single-channel 8/16-bit PNG, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    return arr.astype(np.int64)


def check_same_size(
    image: np.ndarray, label: np.ndarray, image_path: Path, label_path: Path
) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DatasetFormatError(
            f"size mismatch: image {image_path} is {image.shape[0]}x{image.shape[1]} but its "
            f"label {label_path} is {label.shape[0]}x{label.shape[1]}"
        )


class VideoReader(abc.ABC):
    """A split of a video panoptic dataset: sequences of frames with panoptic labels.

    Subclasses set ``root``, ``split`` and implement the three abstract methods.
    """

    label_divisor: int = LABEL_DIVISOR
    ignore_label: int = IGNORE_LABEL
    root: Path
    split: str

    @abc.abstractmethod
    def sequences(self) -> list[int]:
        """Sorted integer keys of the sequences in this split."""

    @abc.abstractmethod
    def num_frames(self, seq: int) -> int:
        """Number of (annotated) frames of ``seq``."""

    @abc.abstractmethod
    def frame_paths(self, seq: int, idx: int) -> tuple[Path, Path]:
        """(image path, label path) of frame ``idx`` of ``seq``."""

    @abc.abstractmethod
    def read_frame(self, seq: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 [H, W, 3], panoptic int64 [H, W] = sem * 1000 + inst, void 255000)."""

    def frame_name(self, seq: int, idx: int) -> str:
        """A stable name for the frame, e.g. for prediction files: ``{seq:06d}_{idx:06d}``."""
        self._check_index(seq, idx)
        return f"{seq:06d}_{idx:06d}"

    def read_image(self, seq: int, idx: int) -> np.ndarray:
        """Only the RGB image of a frame (uint8 [H, W, 3])."""
        self._check_index(seq, idx)
        return read_rgb(self.frame_paths(seq, idx)[0])

    def __len__(self) -> int:
        """Total number of frames in the split."""
        return sum(self.num_frames(s) for s in self.sequences())

    def _check_index(self, seq: int, idx: int) -> None:
        seqs = self.sequences()
        if seq not in seqs:
            raise KeyError(f"sequence {seq} not in {self.split!r} split of {self.root}; "
                           f"available: {seqs[:20]}{' ...' if len(seqs) > 20 else ''}")
        n = self.num_frames(seq)
        if not 0 <= idx < n:
            raise IndexError(f"frame index {idx} out of range for sequence {seq} ({n} frames)")

    def __repr__(self) -> str:
        seqs = self.sequences()
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"sequences={len(seqs)}, frames={len(self)})")


__all__ = [
    "DatasetFormatError", "IGNORE_LABEL", "LABEL_DIVISOR", "VOID", "VideoReader",
    "check_same_size", "read_rgb", "read_rgb_png_u8", "read_single_channel_png",
]
