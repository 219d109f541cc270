"""VIPSeg reader (VIPSeg-Dataset README, metrics.md §4).

Layout (``VIPSeg_720P`` after the dataset's ``change2_720p.py``)::

    root/{split}.txt                    one video name per line
    root/images/{video}/{frame}.jpg     RGB frames
    root/panomasks/{video}/{frame}.png  single channel: 0 void; 1..124 stuff = category id + 1;
                                        >= 125 thing = (category id + 1) * 100 + instance

Category ids 0..123 are those of ``panoVIPSeg_categories.json``; 58 of them are things. The
reader re-indexes them to the ``vipseg_r50`` preset's train ids: things first in category order
(train ids 0..57), then stuff (58..123), and returns ``train_id * 1000 + instance + 1`` for
things (so a real instance is never 0, as Video-K-Net does) and ``train_id * 1000`` for stuff.
The value 200 is a known annotation bug of the dataset (VIPSeg-Dataset issue 1) and is void, as
in Video-K-Net. ``seq`` is the video's position in the split list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vknet_core.panoptic_io.vipseg import (  # the category table lives with the decoder
    CATEGORY_TO_TRAIN_ID,
    VIPSEG_THING_CATEGORIES,
    decode_vipseg,
)
from vknet_training.datasets.base import (
    IGNORE_LABEL,
    LABEL_DIVISOR,
    DatasetFormatError,
    VideoReader,
    check_same_size,
    read_rgb,
    read_single_channel_png,
)


class VIPSegVideo(VideoReader):
    """Frames of one VIPSeg split; ``seq`` is the video's index in ``root/{split}.txt``."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        self.split = split
        list_path = self.root / f"{split}.txt"
        if not list_path.is_file():
            raise DatasetFormatError(
                f"VIPSeg split list not found: {list_path} (expected root/{{split}}.txt with one "
                f"video name per line, beside root/images/ and root/panomasks/)"
            )
        videos = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
        if not videos:
            raise DatasetFormatError(f"{list_path}: empty split list")
        self.videos = videos
        self._frames: dict[int, list[str]] = {}
        for i, video in enumerate(videos):
            img_dir = self.root / "images" / video
            if not img_dir.is_dir():
                raise DatasetFormatError(
                    f"VIPSeg video folder not found: {img_dir} (listed in {list_path})"
                )
            stems = sorted(p.stem for p in img_dir.glob("*.jpg"))
            if not stems:
                raise DatasetFormatError(f"no .jpg frames in VIPSeg video folder {img_dir}")
            self._frames[i] = stems

    def sequences(self) -> list[int]:
        return list(self._frames)

    def num_frames(self, seq: int) -> int:
        if seq not in self._frames:
            raise KeyError(f"video index {seq} not in {self.split!r} ({len(self.videos)} videos)")
        return len(self._frames[seq])

    def frame_name(self, seq: int, idx: int) -> str:
        self._check_index(seq, idx)
        return f"{self.videos[seq]}/{self._frames[seq][idx]}"

    def frame_paths(self, seq: int, idx: int) -> tuple[Path, Path]:
        self._check_index(seq, idx)
        video, stem = self.videos[seq], self._frames[seq][idx]
        return (
            self.root / "images" / video / f"{stem}.jpg",
            self.root / "panomasks" / video / f"{stem}.png",
        )

    def read_frame(self, seq: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, lab_path = self.frame_paths(seq, idx)
        image = read_rgb(img_path)
        mask = read_single_channel_png(lab_path, "VIPSeg panomask")
        check_same_size(image, mask, img_path, lab_path)
        try:
            return image, decode_vipseg(mask, LABEL_DIVISOR, IGNORE_LABEL)
        except ValueError as e:
            raise DatasetFormatError(f"{lab_path}: {e}") from None


__all__ = [
    "CATEGORY_TO_TRAIN_ID",
    "VIPSEG_THING_CATEGORIES",
    "VIPSegVideo",
]
