"""Message <-> numpy conversions for the ROS node (imports message types, never rclpy).

The pixel logic is framework-free in ``vknet_core.image_encodings`` (shared with the offline
bag tools); this module builds and reads ``sensor_msgs``/``std_msgs`` objects around it and uses
``cv_bridge`` where it is installed.

Input: ``sensor_msgs/Image`` (see ``SUPPORTED_ENCODINGS``) or ``sensor_msgs/CompressedImage``
-> uint8 RGB ``[H, W, 3]``. Output: a ``PanopticFrame`` -> ``~/panoptic`` (32SC1),
``~/instance_ids`` (16UC1), ``~/semantic`` (mono8), ``~/overlay`` (rgb8), each carrying the input
header unchanged; the latched ``~/labels`` JSON (``std_msgs/String``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from vknet_core.image_encodings import (  # noqa: F401  (re-exported for subscribers)
    OUTPUT_ENCODINGS,
    SUPPORTED_ENCODINGS,
    ConversionError,
    array_fields,
    compressed_to_rgb,
    decode_panoptic,
    decode_rgb,
    image_to_array,
    image_to_numpy,
    labels_doc,
    output_arrays,
    parse_labels_doc,
)
from vknet_core.types import PanopticFrame

try:  # cv_bridge is part of a full ROS 2 install; it is not a pip wheel
    from cv_bridge import CvBridge as _CvBridge
except ImportError:  # pragma: no cover - depends on the machine
    _CvBridge = None

HAVE_CV_BRIDGE: bool = _CvBridge is not None
_BRIDGE = _CvBridge() if _CvBridge is not None else None


def image_to_rgb(msg: Image, use_cv_bridge: bool = HAVE_CV_BRIDGE) -> np.ndarray:
    """sensor_msgs/Image -> uint8 RGB ``[H, W, 3]`` (C-contiguous).

    With ``use_cv_bridge`` (the default where cv_bridge is installed) the bridge converts every
    encoding it supports, also those outside ``SUPPORTED_ENCODINGS``; for ours, the size checks
    run first so errors read the same in both paths.
    """
    if use_cv_bridge and _BRIDGE is not None:
        if msg.encoding in SUPPORTED_ENCODINGS:
            image_to_array(msg)  # our checks first: empty or truncated data, odd sizes
        try:
            rgb = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as e:  # the bridge raises its own CvBridgeError
            if msg.encoding not in SUPPORTED_ENCODINGS:
                raise ConversionError(
                    f"unsupported image encoding {msg.encoding!r} (cv_bridge: {e}); expected "
                    f"one cv_bridge converts or one of {list(SUPPORTED_ENCODINGS)}"
                ) from e
            raise ConversionError(f"cv_bridge could not convert {msg.encoding}: {e}") from e
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ConversionError(
                f"cv_bridge gave {rgb.dtype} {rgb.shape} for {msg.encoding}; "
                "expected uint8 [H, W, 3]"
            )
        return np.ascontiguousarray(rgb)
    return decode_rgb(msg)


def array_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """``[H, W]`` or ``[H, W, ch]`` array -> Image message (no row padding, native byte order)."""
    msg = Image(**array_fields(arr, encoding))
    if header is not None:
        msg.header = header
    return msg


def rgb_to_compressed(
    rgb: np.ndarray, header: Optional[Header] = None, fmt: str = "jpeg", quality: int = 95
) -> CompressedImage:
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


def frame_to_images(
    frame: PanopticFrame,
    header: Header,
    outputs: Iterable[str] = ("panoptic", "instance_ids", "semantic"),
) -> dict[str, Image]:
    """PanopticFrame -> ``{output name: Image}`` with the input ``header`` unchanged."""
    return {
        name: array_to_image(arr, enc, header)
        for name, (enc, arr) in output_arrays(frame, outputs).items()
    }


def labels_to_msg(
    class_names: Sequence[str],
    thing_ids: Sequence[int],
    palette: Sequence[Sequence[int]],
    label_divisor: int,
    ignore_label: int = 255,
) -> String:
    """The latched ``~/labels`` message (JSON, see ``vknet_core.image_encodings.labels_doc``)."""
    return String(data=labels_doc(class_names, thing_ids, palette, label_divisor, ignore_label))


def parse_labels(msg: String) -> dict:
    """Inverse of ``labels_to_msg`` for subscribers (ids back to ints)."""
    return parse_labels_doc(msg.data)
