"""Where offline frames come from: a video file, an image folder or a recorded ROS 2 bag.

``open_source(path, topic, sequence)`` checks the input (and, for a bag, the topic) before any
output exists, and returns a ``FrameSource``: ``count`` (None if unknown), ``fps`` (None if
unknown), ``frames()`` -> ``SourceFrame``s in order, ``close()``.

Image folders are read in name order. KITTI-STEP names ``{seq:06d}_{frame:06d}_leftImg8bit.png``
keep their stem and start a new sequence at every new ``seq``; ``*_panoptic.png`` label files in
the same folder are skipped. Video and bag frames are named ``{sequence:06d}_{i:06d}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from vknet_training.bag_reader import BagError, ImageBag, is_bag, storage_without_metadata

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
_KITTI_NAME = re.compile(r"^(\d{6})_(\d{6})_leftImg8bit$")
EXPECTED = "a video file, an image folder, a rosbag2 folder (metadata.yaml) or a .mcap file"


@dataclass(frozen=True)
class SourceFrame:
    """rgb: uint8 RGB [H, W, 3]; stem: output PNG name stem; sequence: frames with another key
    start a new sequence ("" = one sequence). Bags add the input ``header`` (copied to every
    output), its ``stamp_ns`` and the message's ``log_time_ns``."""

    rgb: np.ndarray
    stem: str
    sequence: str = ""
    stamp_ns: Optional[int] = None
    header: Any = None
    log_time_ns: Optional[int] = None


class FrameSource:
    """Base: ``kind`` ("video", "images", "bag"), ``count``, ``fps``, ``frames()``, ``close()``."""

    kind = ""
    count: Optional[int] = None
    fps: Optional[float] = None

    def frames(self) -> Iterator[SourceFrame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageFolder(FrameSource):
    kind = "images"

    def __init__(self, folder: Path) -> None:
        imgs = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        self.files = [p for p in imgs if not p.stem.endswith("_panoptic")]
        skipped = len(imgs) - len(self.files)
        if skipped:
            log.info("skipping %d *_panoptic.png label files in %s", skipped, folder)
        if not self.files:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTS)}) in folder {folder}"
                + (f" ({skipped} *_panoptic label files skipped)" if skipped else "")
            )
        self.count = len(self.files)

    def frames(self) -> Iterator[SourceFrame]:
        for p in self.files:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read image {p}; expected {', '.join(IMAGE_EXTS)}")
            m = _KITTI_NAME.match(p.stem)
            yield SourceFrame(
                cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                f"{m.group(1)}_{m.group(2)}" if m else p.stem,
                m.group(1) if m else "",
            )


class VideoFile(FrameSource):
    kind = "video"

    def __init__(self, path: Path, sequence: int) -> None:
        self.path, self.sequence = path, sequence
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise ValueError(
                f"cannot open video {path} (OpenCV has no decoder for it?); expected {EXPECTED}"
            )
        self.count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or None

    def frames(self) -> Iterator[SourceFrame]:
        i = 0
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                return
            yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{self.sequence:06d}_{i:06d}")
            i += 1

    def close(self) -> None:
        self._cap.release()


class BagSource(FrameSource):
    kind = "bag"

    def __init__(self, path: Path, topic: Optional[str], sequence: int) -> None:
        self.bag = ImageBag.open(path, topic)
        self.sequence = sequence
        self.count, self.fps = self.bag.count, self.bag.fps
        self.topic = self.bag.topic

    @property
    def typestore(self) -> Any:
        return self.bag.typestore

    def frames(self) -> Iterator[SourceFrame]:
        for f in self.bag.frames():
            yield SourceFrame(
                f.rgb,
                f"{self.sequence:06d}_{f.index:06d}",
                "",
                f.stamp_ns,
                f.header,
                f.log_time_ns,
            )

    def close(self) -> None:
        self.bag.close()


def open_source(path: Path, topic: Optional[str] = None, sequence: int = 0) -> FrameSource:
    """Open ``path`` as a bag, an image folder or a video (in that order of checks)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist; expected {EXPECTED}")
    if is_bag(path) or storage_without_metadata(path):
        return BagSource(path, topic, sequence)
    if topic is not None:
        raise BagError(
            f"--topic {topic} applies to bags only; input {path} is not a bag "
            f"(expected {EXPECTED.split(', ', 2)[2]})"
        )
    if path.is_dir():
        return ImageFolder(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} is neither an image folder nor a video file")
    return VideoFile(path, sequence)
