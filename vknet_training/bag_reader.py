"""Camera frames from a recorded ROS 2 bag, without a ROS install (``rosbags``, pure Python).

Input: a rosbag2 folder (``metadata.yaml`` + sqlite3 ``.db3`` or ``.mcap`` storage) or a single
``.mcap`` / ``.db3`` file. One ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``
topic is read in recorded (log time) order, every message, and decoded by the node's own code
(``vknet_core.image_encodings``), so each frame has the pixels the node would see::

    with ImageBag.open("drive_bag", topic=None) as bag:     # None: the bag's only image topic
        for f in bag.frames():                             # BagFrame: rgb [H, W, 3] uint8, ...
            ...

Every problem (missing or corrupt bag, unknown / non-image topic, truncated message, bad
encoding) raises ``BagError`` (a ``ValueError``) saying what was received and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

from vknet_core.image_encodings import ConversionError, compressed_to_rgb, decode_rgb

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES: tuple[str, ...] = (IMAGE, COMPRESSED)
STORAGE_SUFFIXES: tuple[str, ...] = (".mcap", ".db3")
EXPECTED = "a rosbag2 folder (metadata.yaml with sqlite3 or MCAP storage) or a .mcap file"


def typestore() -> Any:
    """The message definitions used to read and write bags (sensor_msgs is the same in every
    ROS 2 distribution since Humble)."""
    return get_typestore(Stores.ROS2_HUMBLE)


class BagError(ValueError):
    """A bag, topic or message that cannot be read; the message says what and why."""


def is_bag(path: Path) -> bool:
    """True for a folder with ``metadata.yaml`` or a ``.mcap`` / ``.db3`` file."""
    path = Path(path)
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix.lower() in STORAGE_SUFFIXES


def storage_without_metadata(path: Path) -> list[Path]:
    """Storage files in a folder that has no ``metadata.yaml`` (a bag missing its index)."""
    path = Path(path)
    if not path.is_dir() or (path / "metadata.yaml").exists():
        return []
    return sorted(p for p in path.iterdir() if p.suffix.lower() in STORAGE_SUFFIXES)


@dataclass(frozen=True)
class BagFrame:
    """One decoded image message.

    index: position on the topic (0-based); log_time_ns: the bag's receive time stamp;
    header: the message's ``std_msgs/Header`` (rosbags object), copied to every output;
    stamp_ns: header stamp in ns; rgb: uint8 RGB [H, W, 3].
    """

    index: int
    log_time_ns: int
    header: Any
    stamp_ns: int
    rgb: np.ndarray


def _type_name(msgtype: Optional[str]) -> str:
    return (msgtype or "mixed types").rsplit("/", 1)[-1]


class ImageBag:
    """An open bag and its selected image topic. Use ``ImageBag.open`` (a context manager)."""

    def __init__(self, path: Path, reader: Reader, topic: str) -> None:
        self.path = path
        self._reader = reader
        self.topic = topic
        self._conns = [c for c in reader.connections if c.topic == topic]
        self.msgtype: str = self._conns[0].msgtype
        self.count: int = sum(c.msgcount for c in self._conns)
        span = reader.duration / 1e9  # the whole bag's; a good guess for a camera's rate
        self.fps: Optional[float] = (self.count - 1) / span if self.count > 1 and span else None
        self.typestore = typestore()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Union[str, Path], topic: Optional[str] = None) -> ImageBag:
        """Open ``path`` and select ``topic`` (None: the bag's only image topic)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"bag {path} does not exist; expected {EXPECTED}")
        stray = storage_without_metadata(path)
        if stray:
            raise BagError(
                f"folder {path} holds bag storage ({', '.join(p.name for p in stray)}) but no "
                f"metadata.yaml; pass the storage file itself (.mcap) or restore the index with "
                f"'ros2 bag reindex {path}'"
            )
        try:
            reader = Reader(path)
            reader.open()
        except (ReaderError, SerdeError, OSError, KeyError, ValueError) as e:
            if isinstance(e, FileNotFoundError):
                raise FileNotFoundError(f"bag {path}: {e}; expected {EXPECTED}") from e
            raise BagError(f"cannot read bag {path}: {e}; expected {EXPECTED}") from e
        try:
            return cls(path, reader, cls._select(path, reader, topic))
        except BaseException:
            reader.close()
            raise

    @staticmethod
    def _select(path: Path, reader: Reader, topic: Optional[str]) -> str:
        topics = {name: info.msgtype for name, info in reader.topics.items()}
        counts = {name: info.msgcount for name, info in reader.topics.items()}
        images = [t for t, ty in topics.items() if ty in IMAGE_TYPES]
        listing = ", ".join(f"{t} ({_type_name(topics[t])}, {counts[t]} msgs)" for t in images)
        if topic is None:
            if len(images) == 1:
                return images[0]
            if not images:
                others = ", ".join(f"{t} ({ty})" for t, ty in topics.items()) or "none"
                raise BagError(
                    f"bag {path} has no {IMAGE} or {COMPRESSED} topic; its topics: {others}"
                )
            raise BagError(
                f"bag {path} has {len(images)} image topics; choose one with --topic: {listing}"
            )
        if topic not in topics:
            raise BagError(
                f"topic {topic} is not in bag {path}; its image topics: {listing or 'none'}"
            )
        if topics[topic] not in IMAGE_TYPES:
            raise BagError(
                f"topic {topic} in bag {path} is {topics[topic] or 'of mixed types'}"
                f", not {IMAGE} or {COMPRESSED}; image topics: {listing or 'none'}"
            )
        if counts[topic] == 0:
            raise BagError(f"topic {topic} in bag {path} has no messages")
        return topic

    # ------------------------------------------------------------------ reading
    def frames(self) -> Iterator[BagFrame]:
        """Every message on the topic in log-time order, decoded to RGB (no drops)."""
        compressed = self.msgtype == COMPRESSED
        it = self._reader.messages(connections=self._conns)
        index = 0
        while True:
            try:
                item = next(it, None)
            except (ReaderError, SerdeError, OSError, ValueError) as e:
                raise BagError(
                    f"bag {self.path} is corrupt after message {index} of {self.topic}: {e}"
                ) from e
            if item is None:
                return
            conn, log_time, raw = item
            where = (
                f"message {index} of {self.topic} (log time {log_time / 1e9:.3f} s) in bag "
                f"{self.path}"
            )
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except (SerdeError, ValueError, IndexError) as e:
                raise BagError(
                    f"{where} is truncated or corrupt: cannot read {conn.msgtype} from "
                    f"{len(raw)} bytes ({e})"
                ) from e
            try:
                rgb = compressed_to_rgb(msg) if compressed else decode_rgb(msg)
            except ConversionError as e:
                raise BagError(f"{where}: {e}") from e
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            yield BagFrame(index, int(log_time), msg.header, stamp, rgb)
            index += 1

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> ImageBag:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
