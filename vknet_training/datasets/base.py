"""What every video dataset reader provides (image files are read by ``vknet_core.panoptic_io``).

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

import numpy as np

from vknet_core.panoptic_io.png import (
    PanopticFormatError,
    read_rgb,
    read_rgb_png_u8,
    read_single_channel_png,
)

LABEL_DIVISOR = 1000
IGNORE_LABEL = 255
VOID = IGNORE_LABEL * LABEL_DIVISOR


# One error class for unreadable or malformed dataset files, shared with vknet_core.panoptic_io
# (whose readers the datasets use), so callers catch one type.
DatasetFormatError = PanopticFormatError


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
            raise KeyError(
                f"sequence {seq} not in {self.split!r} split of {self.root}; "
                f"available: {seqs[:20]}{' ...' if len(seqs) > 20 else ''}"
            )
        n = self.num_frames(seq)
        if not 0 <= idx < n:
            raise IndexError(f"frame index {idx} out of range for sequence {seq} ({n} frames)")

    def __repr__(self) -> str:
        seqs = self.sequences()
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"sequences={len(seqs)}, frames={len(self)})"
        )


__all__ = [
    "DatasetFormatError",
    "IGNORE_LABEL",
    "LABEL_DIVISOR",
    "VOID",
    "VideoReader",
    "check_same_size",
    "read_rgb",
    "read_rgb_png_u8",
    "read_single_channel_png",
]
