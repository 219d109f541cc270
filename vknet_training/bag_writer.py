"""The node's outputs written to a rosbag2 folder (MCAP storage), openable in Foxglove or RViz2.

Topics (``namespace`` defaults to the node's ``/vknet_node``), the same types, encodings and
values the node publishes (``vknet_core.image_encodings``):

    <ns>/labels        std_msgs/String, the ``~/labels`` JSON, written once, first (latched QoS)
    <ns>/panoptic      sensor_msgs/Image 32SC1    semantic * label_divisor + track id
    <ns>/instance_ids  sensor_msgs/Image 16UC1    track id, 0 = none
    <ns>/semantic      sensor_msgs/Image mono8    train id, 255 = void
    <ns>/overlay       sensor_msgs/Image rgb8     optional colour visualisation

Every image carries its input message's header; its bag timestamp is the input's log time.
Nothing half-written: the bag is built in a hidden folder beside ``path`` and renamed onto it
by ``finish()``; ``abort()`` (or leaving the ``with`` block on an exception) removes it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer

from vknet_core.image_encodings import array_fields

IMAGE = "sensor_msgs/msg/Image"
STRING = "std_msgs/msg/String"
DEFAULT_NAMESPACE = "/vknet_node"
IMAGE_OUTPUTS: tuple[str, ...] = ("panoptic", "instance_ids", "semantic", "overlay")
_NAME = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")


def _qos(durability: QosDurability) -> Qos:
    """Reliable keep-last 1, as the node offers (``ros2 bag play`` republishes with it)."""
    zero = QosTime(0, 0)
    return Qos(
        QosHistory.KEEP_LAST,
        1,
        QosReliability.RELIABLE,
        durability,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


def check_namespace(namespace: str) -> str:
    """``/vknet_node``, ``/cam_front/vknet_node``, ... (a leading ``/`` is added when missing);
    ``ValueError`` for anything that is not a valid ROS 2 topic prefix."""
    ns = namespace if namespace.startswith("/") else "/" + namespace
    if not _NAME.match(ns):
        raise ValueError(
            f"--namespace {namespace!r} is not a ROS 2 topic prefix; expected "
            "names of letters, digits and '_' separated by '/', e.g. "
            "/cam_front/vknet_node"
        )
    return ns


def check_bag_out(path: Path) -> Path:
    """The output bag must not exist yet (a bag is never overwritten or merged into)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(
            f"--bag-out {path} already exists; expected a new folder name "
            "(bags are never overwritten)"
        )
    if path.suffix.lower() in (".mcap", ".db3"):
        raise ValueError(
            f"--bag-out {path} names a storage file; expected a folder name (the "
            f"bag is a folder holding {path.stem}.mcap and metadata.yaml)"
        )
    return path


class ResultBagWriter:
    """Writes labels once, then each frame's output images. ``finish()`` publishes the bag."""

    def __init__(
        self,
        path: Path,
        typestore: Any,
        namespace: str = DEFAULT_NAMESPACE,
        outputs: Sequence[str] = IMAGE_OUTPUTS[:3],
    ) -> None:
        self.path = check_bag_out(Path(path))
        self.namespace = check_namespace(namespace)
        bad = [o for o in outputs if o not in IMAGE_OUTPUTS]
        if bad:
            raise ValueError(f"unknown outputs {bad}; expected some of {list(IMAGE_OUTPUTS)}")
        self.outputs = tuple(outputs)
        self._ts = typestore
        self._image = typestore.types[IMAGE]
        self._string = typestore.types[STRING]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        )
        self._writer: Optional[Writer] = Writer(
            self._tmp / self.path.name, version=8, storage_plugin=StoragePlugin.MCAP
        )
        try:
            self._writer.open()
            volatile, latched = (_qos(QosDurability.VOLATILE), _qos(QosDurability.TRANSIENT_LOCAL))
            self._labels = self._writer.add_connection(
                self.topic("labels"), STRING, typestore=typestore, offered_qos_profiles=[latched]
            )
            self._conns = {
                name: self._writer.add_connection(
                    self.topic(name), IMAGE, typestore=typestore, offered_qos_profiles=[volatile]
                )
                for name in self.outputs
            }
        except BaseException:
            self.abort()
            raise
        self.labels_written = False
        self.frames = 0
        self.messages = 0

    def topic(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def write_labels(self, doc: str, log_time_ns: int) -> None:
        """The ``~/labels`` JSON (``image_encodings.labels_doc``), once, before any image."""
        if self.labels_written or self.frames:
            raise RuntimeError("labels are written once, before the first frame")
        self._write(self._labels, log_time_ns, self._string(data=doc), STRING)
        self.labels_written = True

    def write_frame(
        self, header: Any, log_time_ns: int, arrays: Mapping[str, tuple[str, np.ndarray]]
    ) -> None:
        """One input frame's outputs: ``{name: (encoding, array)}`` as ``output_arrays`` gives
        (plus ``overlay`` rgb8 when enabled); every message gets ``header`` unchanged."""
        if not self.labels_written:
            raise RuntimeError("write_labels must come first (subscribers decode with it)")
        missing = [n for n in self.outputs if n not in arrays]
        if missing:
            raise ValueError(f"frame lacks outputs {missing}; got {sorted(arrays)}")
        for name in self.outputs:
            enc, arr = arrays[name]
            f = array_fields(arr, enc)
            f["data"] = np.frombuffer(f["data"], np.uint8)
            self._write(self._conns[name], log_time_ns, self._image(header=header, **f), IMAGE)
        self.frames += 1

    def _write(self, conn: Any, log_time_ns: int, msg: Any, msgtype: str) -> None:
        if self._writer is None:
            raise RuntimeError(f"bag {self.path} is already finished or aborted")
        self._writer.write(conn, int(log_time_ns), self._ts.serialize_cdr(msg, msgtype))
        self.messages += 1

    def finish(self) -> Path:
        """Close the storage, write ``metadata.yaml`` and move the bag onto ``path``."""
        if self._writer is None:
            raise RuntimeError(f"bag {self.path} is already finished or aborted")
        try:
            self._writer.close()
            self._writer = None
            check_bag_out(self.path)  # nobody created it meanwhile
            (self._tmp / self.path.name).rename(self.path)
        except BaseException:
            self.abort()
            raise
        shutil.rmtree(self._tmp, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Drop everything written; ``path`` is left as it was (absent)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ResultBagWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._writer is not None:
            if exc_type is None:
                self.finish()
            else:
                self.abort()
