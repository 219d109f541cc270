"""The colour overlay as an .mp4: H.264 where the installed OpenCV can encode it, else MPEG-4.

H.264 (``avc1``) plays in every browser and viewer; pip's OpenCV wheels usually lack an H.264
encoder, so ``video_codec()`` probes once per process (a 2-frame file in a temporary folder) and
falls back to MPEG-4 Part 2 (``mp4v``) with one log line. The writer sizes itself from the first
frame; later frames of another size are resized (nearest) to it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

log = logging.getLogger(__name__)

# fourcc -> the name the summary prints
CODECS: dict[str, str] = {"avc1": "H.264", "mp4v": "MPEG-4 Part 2 (mp4v)"}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """FFmpeg and OpenCV print encoder probing errors straight to fd 2; hide them."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        cv2.utils.logging.setLogLevel(level)


def _can_encode(fourcc: str) -> bool:
    with tempfile.TemporaryDirectory() as d, _quiet_stderr():
        path = os.path.join(d, "probe.mp4")
        w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
        if not w.isOpened():
            return False
        for v in (0, 255):
            w.write(np.full((48, 64, 3), v, np.uint8))
        w.release()
        return os.path.getsize(path) > 0


@functools.lru_cache(maxsize=1)
def video_codec() -> str:
    """``"avc1"`` if OpenCV can write H.264 here, else ``"mp4v"`` (logged once)."""
    if _can_encode("avc1"):
        return "avc1"
    log.info(
        "this OpenCV build has no H.264 encoder; writing the overlay video as MPEG-4 "
        "Part 2 (mp4v) instead (an OpenCV built with FFmpeg + libx264/openh264 writes H.264)"
    )
    return "mp4v"


class OverlayVideo:
    """Append RGB frames to ``path`` (.mp4); ``close()`` finalises it."""

    def __init__(self, path: Path, fps: float, codec: Optional[str] = None) -> None:
        if fps <= 0:
            raise ValueError(f"video fps must be > 0, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.codec = codec or video_codec()
        self._writer: Optional[cv2.VideoWriter] = None
        self._hw: Optional[tuple[int, int]] = None
        self.frames = 0

    @property
    def codec_name(self) -> str:
        return CODECS.get(self.codec, self.codec)

    def write(self, rgb: np.ndarray) -> None:
        """uint8 RGB [H, W, 3]."""
        if self._writer is None:
            self._hw = rgb.shape[:2]
            h, w = self._hw
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*self.codec), self.fps, (w, h)
            )
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write a {self.codec_name} video to {self.path}")
        if rgb.shape[:2] != self._hw:
            rgb = cv2.resize(rgb, (self._hw[1], self._hw[0]), interpolation=cv2.INTER_NEAREST)
        self._writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
