"""Small real bags for the bag tests, written and read with ``rosbags`` (no ROS install).

``write_camera_bag`` records synthetic street-scene frames (moving cars and people) on an image
topic, as ``ros2 bag record`` would: sqlite3 or MCAP storage, raw ``sensor_msgs/Image`` or
``sensor_msgs/CompressedImage`` (png or jpeg), each message with its header stamp and log time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from vknet_training.bag_reader import COMPRESSED, IMAGE, typestore
from vknet_training.make_synthetic import make_sequence

TOPIC = "/cam_front/image_raw"
LOG0 = 1_700_000_000 * 10**9  # log time of the first message [ns]


def synthetic_frames(
    n: int = 8, hw: tuple[int, int] = (96, 160), seed: int = 3
) -> list[np.ndarray]:
    """``n`` uint8 RGB [H, W, 3] frames of one moving synthetic scene."""
    return [rgb for rgb, _ in make_sequence(np.random.default_rng(seed), n, hw[0], hw[1])]


def camera_msg(
    rgb: np.ndarray, stamp_ns: int, fmt: str = "raw", frame_id: str = "cam_front_optical"
) -> Any:
    """rosbags message: ``raw`` -> Image rgb8; ``png`` / ``jpeg`` -> CompressedImage."""
    ts = typestore()
    header = ts.types["std_msgs/msg/Header"](
        stamp=ts.types["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9
        ),
        frame_id=frame_id,
    )
    if fmt == "raw":
        h, w = rgb.shape[:2]
        return ts.types[IMAGE](
            header=header,
            height=h,
            width=w,
            encoding="rgb8",
            is_bigendian=0,
            step=w * 3,
            data=rgb.reshape(-1).copy(),
        )
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", rgb[:, :, ::-1])
    assert ok
    return ts.types[COMPRESSED](
        header=header, format=f"rgb8; {fmt} compressed bgr8", data=buf.reshape(-1)
    )


@dataclass
class RecordedBag:
    """What a test needs: the path to pass as ``--input``, the topic and what was written."""

    path: Path
    topic: str
    msgtype: str
    log_times: list[int]
    raw: list[bytes]  # serialised CDR of every message, in order
    headers: list[Any]


def write_camera_bag(
    folder: Path,
    frames: Sequence[np.ndarray],
    stamps_ns: Optional[Sequence[int]] = None,
    storage: str = "sqlite3",
    fmt: str = "raw",
    topic: str = TOPIC,
    corrupt: Optional[dict[int, bytes]] = None,
    extra: Sequence[tuple[str, str]] = (),
) -> RecordedBag:
    """Record ``frames`` to the bag folder ``folder``.

    storage: ``sqlite3``, ``mcap`` (folder) or ``mcap-file`` (returns the .mcap file as path).
    corrupt: {index: raw bytes} replaces those messages' payloads (truncated messages).
    extra: (topic, msgtype) of further topics, one message each (``std_msgs/msg/String`` or
    another image topic).
    """
    ts = typestore()
    stamps = (
        list(stamps_ns)
        if stamps_ns is not None
        else [LOG0 - 20_000_000 + i * 100_000_000 for i in range(len(frames))]
    )
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    msgtype = IMAGE if fmt == "raw" else COMPRESSED
    rec = RecordedBag(folder, topic, msgtype, [], [], [])
    with Writer(folder, version=8, storage_plugin=plugin) as w:
        conn = w.add_connection(topic, msgtype, typestore=ts)
        for name, ty in extra:
            c = w.add_connection(name, ty, typestore=ts)
            msg = (
                ts.types[ty](data="not an image")
                if ty == "std_msgs/msg/String"
                else camera_msg(frames[0], stamps[0], "raw" if ty == IMAGE else "png")
            )
            w.write(c, LOG0, ts.serialize_cdr(msg, ty))
        for i, (rgb, stamp) in enumerate(zip(frames, stamps)):
            msg = camera_msg(rgb, stamp, fmt)
            raw = bytes(ts.serialize_cdr(msg, msgtype))
            if corrupt and i in corrupt:
                raw = corrupt[i]
            log_time = LOG0 + i * 100_000_000
            w.write(conn, log_time, raw)
            rec.log_times.append(log_time)
            rec.raw.append(raw)
            rec.headers.append(msg.header)
    if storage == "mcap-file":
        rec.path = folder / f"{folder.name}.mcap"
        assert rec.path.is_file()
    return rec


def read_bag(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """{topic: [(log time, deserialised message), ...]} in bag order; and checks the storage."""
    ts = typestore()
    out: dict[str, list[tuple[int, Any]]] = {}
    with Reader(path) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, ts.deserialize_cdr(raw, conn.msgtype)))
    return out


def bag_order(path: Path) -> list[str]:
    """Topics in the order the messages are stored (log time, then write order)."""
    with Reader(path) as r:
        return [conn.topic for conn, _, _ in r.messages()]
