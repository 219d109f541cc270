"""Message <-> numpy conversions for the ROS node (imports message types, never rclpy).

Input: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1, 8UC3, 16UC1; any row
padding ``step``; either byte order) or ``sensor_msgs/CompressedImage`` (jpeg/png) -> uint8 RGB
``[H, W, 3]``. ``cv_bridge`` is used where it is installed (``use_cv_bridge=True``), else the
project's own conversion below, which the tests cover encoding by encoding.

Output: a ``PanopticFrame`` -> ``~/panoptic`` (32SC1), ``~/instance_ids`` (16UC1), ``~/semantic``
(mono8), ``~/overlay`` (rgb8), each carrying the input header unchanged; the latched ``~/labels``
JSON (``std_msgs/String``).
"""
from __future__ import annotations

import json
import sys
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from vknet_core.types import PanopticFrame

try:  # cv_bridge is part of a full ROS 2 install; it is not a pip wheel
    from cv_bridge import CvBridge as _CvBridge
except ImportError:  # pragma: no cover - depends on the machine
    _CvBridge = None

HAVE_CV_BRIDGE: bool = _CvBridge is not None
_BRIDGE = _CvBridge() if _CvBridge is not None else None


class ConversionError(ValueError):
    """An image message that cannot be turned into RGB (says what was received and expected)."""


def _mono16_to_u8(v: np.ndarray) -> np.ndarray:
    """uint16 [H,W] -> uint8 [H,W], full range to full range (round(v * 255 / 65535))."""
    return ((v.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[:, :, None], 3, axis=2)


# encoding -> (channels, dtype, function from the [H, W, ch] array to uint8 RGB [H, W, 3])
_DECODERS: dict[str, tuple[int, type, Callable[[np.ndarray], np.ndarray]]] = {
    "rgb8": (3, np.uint8, lambda a: a),
    "bgr8": (3, np.uint8, lambda a: a[:, :, ::-1]),
    "8UC3": (3, np.uint8, lambda a: a[:, :, ::-1]),  # OpenCV's default order, as cv_bridge
    "rgba8": (4, np.uint8, lambda a: a[:, :, :3]),
    "bgra8": (4, np.uint8, lambda a: a[:, :, 2::-1]),
    "mono8": (1, np.uint8, lambda a: _gray_to_rgb(a[:, :, 0])),
    "8UC1": (1, np.uint8, lambda a: _gray_to_rgb(a[:, :, 0])),
    "mono16": (1, np.uint16, lambda a: _gray_to_rgb(_mono16_to_u8(a[:, :, 0]))),
    "16UC1": (1, np.uint16, lambda a: _gray_to_rgb(_mono16_to_u8(a[:, :, 0]))),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_DECODERS)

# what the node publishes: encoding -> (channels, dtype)
_ENCODERS: dict[str, tuple[int, type]] = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "mono8": (1, np.uint8),
    "mono16": (1, np.uint16), "16UC1": (1, np.uint16), "32SC1": (1, np.int32),
    "rgba8": (4, np.uint8), "bgra8": (4, np.uint8), "8UC1": (1, np.uint8), "8UC3": (3, np.uint8),
}


def image_to_array(msg: Image) -> np.ndarray:
    """Image message -> array view ``[H, W, ch]`` in the message's own encoding and dtype.

    Handles row padding (``step`` > width * bytes per pixel) and big-endian 16-bit data.
    Raises ``ConversionError`` for unknown encodings, empty images, or a ``step``/``data``
    length that does not fit ``height`` x ``width``.
    """
    enc = msg.encoding
    if enc not in _DECODERS:
        raise ConversionError(
            f"unsupported image encoding {enc!r}; expected one of {list(SUPPORTED_ENCODINGS)}"
        )
    ch, dtype, _ = _DECODERS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ConversionError(f"empty image: {w}x{h} ({enc}); expected width and height > 0")
    row = w * ch * np.dtype(dtype).itemsize
    if step < row:
        raise ConversionError(
            f"step {step} is smaller than width*bytes_per_pixel = {w}*{row // w} = {row} ({enc})"
        )
    data = msg.data
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if buf.size < step * h:
        raise ConversionError(
            f"image data has {buf.size} bytes; expected step*height = {step}*{h} = {step * h} "
            f"({w}x{h} {enc})"
        )
    rows = buf[: step * h].reshape(h, step)[:, :row]  # drop the row padding
    arr = np.ascontiguousarray(rows).view(dtype).reshape(h, w, ch)
    if np.dtype(dtype).itemsize > 1 and bool(msg.is_bigendian) != (sys.byteorder == "big"):
        arr = arr.byteswap()
    return arr


def image_to_rgb(msg: Image, use_cv_bridge: bool = HAVE_CV_BRIDGE) -> np.ndarray:
    """sensor_msgs/Image -> uint8 RGB ``[H, W, 3]`` (C-contiguous).

    With ``use_cv_bridge`` (the default where cv_bridge is installed) the bridge converts; the
    encoding and size checks are ours in both paths so errors read the same.
    """
    if msg.encoding not in _DECODERS:
        raise ConversionError(
            f"unsupported image encoding {msg.encoding!r}; expected one of "
            f"{list(SUPPORTED_ENCODINGS)}"
        )
    if use_cv_bridge and _BRIDGE is not None:
        if msg.height == 0 or msg.width == 0:
            raise ConversionError(f"empty image: {msg.width}x{msg.height} ({msg.encoding})")
        try:
            rgb = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as e:  # the bridge raises its own CvBridgeError
            raise ConversionError(f"cv_bridge could not convert {msg.encoding}: {e}") from e
        return np.ascontiguousarray(rgb)
    arr = image_to_array(msg)
    return np.ascontiguousarray(_DECODERS[msg.encoding][2](arr))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> uint8 RGB ``[H, W, 3]``."""
    import cv2  # lazy: only the compressed path needs OpenCV

    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ConversionError(f"empty compressed image (format {msg.format!r})")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ConversionError(
            f"could not decode compressed image of {buf.size} bytes (format {msg.format!r}); "
            "expected jpeg or png data"
        )
    return np.ascontiguousarray(img[:, :, ::-1])


def array_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """``[H, W]`` or ``[H, W, ch]`` array -> Image message (no row padding, native byte order).

    The dtype and channel count must match ``encoding`` (e.g. 32SC1 needs int32 ``[H, W]``).
    """
    if encoding not in _ENCODERS:
        raise ValueError(f"cannot encode {encoding!r}; expected one of {sorted(_ENCODERS)}")
    ch, dtype = _ENCODERS[encoding]
    a = arr if arr.ndim == 3 else arr[:, :, None]
    if a.ndim != 3 or a.shape[2] != ch or a.dtype != np.dtype(dtype):
        raise ValueError(
            f"{encoding} needs a {np.dtype(dtype).name} array [H,W{'' if ch == 1 else f',{ch}'}],"
            f" got {arr.dtype.name} {tuple(arr.shape)}"
        )
    a = np.ascontiguousarray(a)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big" and a.dtype.itemsize > 1)
    msg.step = int(a.shape[1] * ch * a.dtype.itemsize)
    msg.data = a.tobytes()
    return msg


def rgb_to_compressed(rgb: np.ndarray, header: Optional[Header] = None,
                      fmt: str = "jpeg", quality: int = 95) -> CompressedImage:
    """uint8 RGB ``[H, W, 3]`` -> CompressedImage (``jpeg`` or ``png``)."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[:, :, ::-1], params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"rgb8; {fmt} compressed bgr8"
    msg.data = buf.tobytes()
    return msg


OUTPUT_ENCODINGS: dict[str, str] = {
    "panoptic": "32SC1", "instance_ids": "16UC1", "semantic": "mono8", "overlay": "rgb8",
}


def frame_to_images(frame: PanopticFrame, header: Header,
                    outputs: Iterable[str] = ("panoptic", "instance_ids", "semantic"),
                    ) -> dict[str, Image]:
    """PanopticFrame -> ``{output name: Image}`` with the input ``header`` unchanged.

    panoptic:     32SC1, semantic_id * label_divisor + track_id (void = 255 * label_divisor)
    instance_ids: 16UC1, track id per pixel, 0 = stuff / no track
    semantic:     mono8, dataset train id per pixel, 255 = void
    """
    arrays = {
        "panoptic": frame.panoptic.astype(np.int32, copy=False),
        "instance_ids": frame.instance_ids.astype(np.uint16, copy=False),
        "semantic": frame.semantic.astype(np.uint8, copy=False),
    }
    out = {}
    for name in outputs:
        if name not in arrays:
            raise ValueError(f"unknown output {name!r}; expected one of {sorted(arrays)}")
        out[name] = array_to_image(arrays[name], OUTPUT_ENCODINGS[name], header)
    return out


def labels_to_msg(class_names: Sequence[str], thing_ids: Sequence[int],
                  palette: Sequence[Sequence[int]], label_divisor: int,
                  ignore_label: int = 255) -> String:
    """The latched ``~/labels`` message: JSON with everything a subscriber needs to decode.

    ``{"classes": {"0": "road", ...}, "thing_ids": [11, 13], "palette": {"0": [r,g,b], ...},
    "label_divisor": 1000, "ignore_label": 255, "encodings": {...}}``
    """
    if len(palette) < len(class_names):
        raise ValueError(
            f"palette has {len(palette)} colours for {len(class_names)} classes; need one each"
        )
    doc = {
        "classes": {str(i): str(n) for i, n in enumerate(class_names)},
        "thing_ids": [int(t) for t in thing_ids],
        "palette": {str(i): [int(c) for c in palette[i][:3]] for i in range(len(class_names))},
        "label_divisor": int(label_divisor),
        "ignore_label": int(ignore_label),
        "encodings": dict(OUTPUT_ENCODINGS),
    }
    return String(data=json.dumps(doc, sort_keys=True))


def parse_labels(msg: String) -> dict:
    """Inverse of ``labels_to_msg`` for subscribers (ids back to ints)."""
    doc = json.loads(msg.data)
    doc["classes"] = {int(k): v for k, v in doc["classes"].items()}
    doc["palette"] = {int(k): tuple(v) for k, v in doc["palette"].items()}
    return doc


def decode_panoptic(msg: Image, label_divisor: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Subscriber helper: ``~/panoptic`` (32SC1) -> (semantic id, track id), each int32 [H, W].

    ``label_divisor`` is published in ``~/labels`` (1000 by default).
    """
    if msg.encoding != "32SC1":
        raise ConversionError(f"panoptic image must be 32SC1, got {msg.encoding!r}")
    pan = image_to_numpy(msg)
    return pan // label_divisor, pan % label_divisor


def image_to_numpy(msg: Image) -> np.ndarray:
    """Any published output (32SC1, 16UC1, mono8, rgb8) -> ``[H, W]`` or ``[H, W, 3]`` array."""
    if msg.encoding not in _ENCODERS:
        raise ConversionError(f"unsupported encoding {msg.encoding!r}")
    ch, dtype = _ENCODERS[msg.encoding]
    flat = _raw_view_channels(msg, dtype, ch)
    return flat[:, :, 0] if ch == 1 else flat


def _raw_view_channels(msg: Image, dtype: type, ch: int) -> np.ndarray:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    row = w * ch * np.dtype(dtype).itemsize
    if step < row or buf.size < step * h:
        raise ConversionError(f"{msg.encoding} {w}x{h}: step {step}, {buf.size} bytes do not fit")
    arr = np.ascontiguousarray(buf[: step * h].reshape(h, step)[:, :row]).view(dtype)
    if np.dtype(dtype).itemsize > 1 and bool(msg.is_bigendian) != (sys.byteorder == "big"):
        arr = arr.byteswap()
    return arr.reshape(h, w, ch)
