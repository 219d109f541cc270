"""ROS image encodings <-> numpy, framework-free (no rclpy, no message packages).

One implementation serves the live node (``vknet_ros/conversions.py`` wraps it around
``sensor_msgs`` objects) and the offline tools (recorded bags read with ``rosbags``): any object
with the fields of ``sensor_msgs/Image`` (``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data``) or ``sensor_msgs/CompressedImage`` (``format``, ``data``) is accepted, so a
frame decodes to the same pixels whichever way it arrived.

Input: raw encodings in ``SUPPORTED_ENCODINGS`` (any row padding ``step``, either byte order) or
compressed jpeg/png -> uint8 RGB ``[H, W, 3]``. Packed YUV (``yuv422`` = UYVY,
``yuv422_yuy2`` = YUYV), ``nv21`` (Y plane of ``height`` rows, then ``height / 2`` rows of
interleaved V/U) and Bayer mosaics go through OpenCV's ``cvtColor`` with the codes cv_bridge uses;
16-bit colour (``rgb16``/``bgr16``) scales full range to full range like ``mono16``.
Output: ``output_arrays(frame)`` -> the arrays the node publishes, ``array_fields`` -> the fields
of an Image message for them; ``labels_doc`` -> the ``~/labels`` JSON document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from vknet_core.types import PanopticFrame


class ConversionError(ValueError):
    """An image message that cannot be turned into RGB (says what was received and expected)."""


def _mono16_to_u8(v: np.ndarray) -> np.ndarray:
    """uint16 [H,W] -> uint8 [H,W], full range to full range (round(v * 255 / 65535))."""
    return ((v.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[:, :, None], 3, axis=2)


def _cv(code_name: str) -> Callable[[np.ndarray], np.ndarray]:
    """``[H, W, ch]`` -> RGB through ``cv2.cvtColor(..., cv2.<code_name>)`` (OpenCV lazily)."""

    def convert(a: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.cvtColor(
            np.ascontiguousarray(a if a.shape[2] > 1 else a[:, :, 0]), getattr(cv2, code_name)
        )

    return convert


# OpenCV names a Bayer pattern by the second row's first two pixels: ROS bayer_rggb8 (R G / G B)
# is COLOR_BayerBG2RGB, exactly the codes cv_bridge uses.
_BAYER: dict[str, str] = {
    "bayer_rggb8": "COLOR_BayerBG2RGB",
    "bayer_bggr8": "COLOR_BayerRG2RGB",
    "bayer_gbrg8": "COLOR_BayerGR2RGB",
    "bayer_grbg8": "COLOR_BayerGB2RGB",
}
# encodings whose data holds more rows than ``height`` (planar 4:2:0): rows per image row
_ROWS_PER_ROW: dict[str, float] = {"nv21": 1.5}


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
    "rgb16": (3, np.uint16, lambda a: _mono16_to_u8(a)),
    "bgr16": (3, np.uint16, lambda a: _mono16_to_u8(a)[:, :, ::-1]),
    "yuv422": (2, np.uint8, _cv("COLOR_YUV2RGB_UYVY")),  # U0 Y0 V0 Y1 (ROS name for UYVY)
    "yuv422_yuy2": (2, np.uint8, _cv("COLOR_YUV2RGB_YUY2")),  # Y0 U0 Y1 V0
    "nv21": (1, np.uint8, _cv("COLOR_YUV2RGB_NV21")),  # Y plane, then V U interleaved
    **{enc: (1, np.uint8, _cv(code)) for enc, code in _BAYER.items()},
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_DECODERS)

# what the node publishes: encoding -> (channels, dtype)
_ENCODERS: dict[str, tuple[int, type]] = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "mono8": (1, np.uint8),
    "mono16": (1, np.uint16),
    "16UC1": (1, np.uint16),
    "32SC1": (1, np.int32),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "8UC1": (1, np.uint8),
    "8UC3": (3, np.uint8),
}

OUTPUT_ENCODINGS: dict[str, str] = {
    "panoptic": "32SC1",
    "instance_ids": "16UC1",
    "semantic": "mono8",
    "overlay": "rgb8",
}


def _check_encoding(enc: str) -> None:
    if enc not in _DECODERS:
        raise ConversionError(
            f"unsupported image encoding {enc!r}; expected one of {list(SUPPORTED_ENCODINGS)}"
        )


def _rows(msg: Any, row: int) -> np.ndarray:
    """The message's data as ``[R, row]`` uint8 without the row padding (size-checked);
    R = height, or 1.5 * height for planar 4:2:0 encodings."""
    h, w, step, enc = int(msg.height), int(msg.width), int(msg.step), msg.encoding
    if h == 0 or w == 0:
        raise ConversionError(f"empty image: {w}x{h} ({enc}); expected width and height > 0")
    if enc in _ROWS_PER_ROW or enc in ("yuv422", "yuv422_yuy2"):
        if w % 2 or (enc in _ROWS_PER_ROW and h % 2):
            raise ConversionError(
                f"{enc} needs an even width{' and height' * (enc == 'nv21')}, got {w}x{h}"
            )
        h = int(h * _ROWS_PER_ROW.get(enc, 1))
    if step < row:
        raise ConversionError(
            f"step {step} is smaller than width*bytes_per_pixel = {w}*{row // w} = {row} ({enc})"
        )
    data = msg.data
    buf = (
        data.view(np.uint8).reshape(-1)
        if isinstance(data, np.ndarray)
        else np.frombuffer(data, dtype=np.uint8)
    )
    if buf.size < step * h:
        raise ConversionError(
            f"image data has {buf.size} bytes; expected step*height = {step}*{h} = {step * h} "
            f"({w}x{h} {enc})"
        )
    return buf[: step * h].reshape(h, step)[:, :row]


def _view(msg: Any, dtype: type, ch: int) -> np.ndarray:
    """``[R, W, ch]`` array of ``dtype`` in native byte order (R as in ``_rows``)."""
    w = int(msg.width)
    rows = _rows(msg, w * ch * np.dtype(dtype).itemsize)
    arr = np.ascontiguousarray(rows).view(dtype)
    if np.dtype(dtype).itemsize > 1 and bool(msg.is_bigendian) != (sys.byteorder == "big"):
        arr = arr.byteswap()
    return arr.reshape(rows.shape[0], w, ch)


def image_to_array(msg: Any) -> np.ndarray:
    """Image message -> array ``[H, W, ch]`` in the message's own encoding and dtype.

    Handles row padding (``step`` > width * bytes per pixel) and big-endian 16-bit data.
    Raises ``ConversionError`` for unknown encodings, empty images, or a ``step``/``data``
    length that does not fit ``height`` x ``width``.
    """
    _check_encoding(msg.encoding)
    ch, dtype, _ = _DECODERS[msg.encoding]
    return _view(msg, dtype, ch)


def decode_rgb(msg: Any) -> np.ndarray:
    """Image message (any encoding in ``SUPPORTED_ENCODINGS``) -> uint8 RGB ``[H, W, 3]``."""
    arr = image_to_array(msg)
    return np.ascontiguousarray(_DECODERS[msg.encoding][2](arr))


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """CompressedImage message (jpeg, png, ...) -> uint8 RGB ``[H, W, 3]``."""
    import cv2  # lazy: only the compressed path needs OpenCV

    data = msg.data
    buf = (
        data.view(np.uint8).reshape(-1)
        if isinstance(data, np.ndarray)
        else np.frombuffer(data, dtype=np.uint8)
    )
    if buf.size == 0:
        raise ConversionError(f"empty compressed image (format {msg.format!r})")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ConversionError(
            f"could not decode compressed image of {buf.size} bytes (format {msg.format!r}); "
            "expected jpeg or png data"
        )
    return np.ascontiguousarray(img[:, :, ::-1])


def array_fields(arr: np.ndarray, encoding: str) -> dict[str, Any]:
    """``[H, W]`` or ``[H, W, ch]`` array -> the fields of an Image message (no row padding,
    native byte order): ``height, width, encoding, is_bigendian, step, data`` (bytes).

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
    return {
        "height": int(a.shape[0]),
        "width": int(a.shape[1]),
        "encoding": encoding,
        "is_bigendian": int(sys.byteorder == "big" and a.dtype.itemsize > 1),
        "step": int(a.shape[1] * ch * a.dtype.itemsize),
        "data": a.tobytes(),
    }


def image_to_numpy(msg: Any) -> np.ndarray:
    """Any published output (32SC1, 16UC1, mono8, rgb8, ...) -> ``[H, W]`` or ``[H, W, ch]``."""
    if msg.encoding not in _ENCODERS:
        raise ConversionError(
            f"unsupported encoding {msg.encoding!r}; expected one of {sorted(_ENCODERS)}"
        )
    ch, dtype = _ENCODERS[msg.encoding]
    arr = _view(msg, dtype, ch)
    return arr[:, :, 0] if ch == 1 else arr


def decode_panoptic(msg: Any, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """Subscriber helper: ``~/panoptic`` (32SC1) -> (semantic id, track id), each int32 [H, W].

    ``label_divisor`` is the one announced in ``~/labels``.
    """
    if msg.encoding != "32SC1":
        raise ConversionError(f"panoptic image must be 32SC1, got {msg.encoding!r}")
    pan = image_to_numpy(msg)
    return pan // label_divisor, pan % label_divisor


def output_arrays(
    frame: PanopticFrame,
    outputs: Iterable[str] = ("panoptic", "instance_ids", "semantic"),
) -> dict[str, tuple[str, np.ndarray]]:
    """PanopticFrame -> ``{output name: (encoding, array)}``, the arrays the node publishes.

    panoptic:     32SC1, semantic_id * label_divisor + track_id (void = 255 * label_divisor)
    instance_ids: 16UC1, track id per pixel, 0 = stuff / no track
    semantic:     mono8, dataset train id per pixel, 255 = void
    """
    arrays = {
        "panoptic": lambda: frame.panoptic.astype(np.int32, copy=False),
        "instance_ids": lambda: frame.instance_ids.astype(np.uint16, copy=False),
        "semantic": lambda: frame.semantic.astype(np.uint8, copy=False),
    }
    out = {}
    for name in outputs:
        if name not in arrays:
            raise ValueError(f"unknown output {name!r}; expected one of {sorted(arrays)}")
        out[name] = (OUTPUT_ENCODINGS[name], arrays[name]())
    return out


def labels_doc(
    class_names: Sequence[str],
    thing_ids: Sequence[int],
    palette: Sequence[Sequence[int]],
    label_divisor: int,
    ignore_label: int = 255,
) -> str:
    """The ``~/labels`` JSON: everything a subscriber needs to decode the outputs.

    ``{"classes": {"0": "road", ...}, "thing_ids": [11, 13], "palette": {"0": [r,g,b], ...},
    "label_divisor": ..., "ignore_label": 255, "encodings": {...}}``
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
    return json.dumps(doc, sort_keys=True)


def parse_labels_doc(text: str) -> dict:
    """Inverse of ``labels_doc`` (ids back to ints)."""
    doc = json.loads(text)
    doc["classes"] = {int(k): v for k, v in doc["classes"].items()}
    doc["palette"] = {int(k): tuple(v) for k, v in doc["palette"].items()}
    return doc
