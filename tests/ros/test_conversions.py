"""Image <-> numpy conversions and output messages, without a ROS graph (message types only)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("sensor_msgs", reason="sensor_msgs (ros-sensor-msgs wheel) is not installed")

from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from tests.ros.test_camera_encodings import CAMERA_ENCODINGS
from vknet_core.types import PanopticFrame
from vknet_ros.conversions import (
    SUPPORTED_ENCODINGS,
    ConversionError,
    array_to_image,
    compressed_to_rgb,
    decode_panoptic,
    frame_to_images,
    image_to_numpy,
    image_to_rgb,
    labels_to_msg,
    parse_labels,
    rgb_to_compressed,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def raw_msg(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Image message built by hand (independent of array_to_image), with ``pad`` bytes per row."""
    a = arr if arr.ndim == 3 else arr[:, :, None]
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">" if bigendian else "<"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((a.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(
        height=a.shape[0],
        width=a.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1],
    )
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "encoding,make,expect",
    [
        ("rgb8", lambda x: x, lambda x: x),
        ("bgr8", lambda x: x[:, :, ::-1], lambda x: x),
        ("8UC3", lambda x: x[:, :, ::-1], lambda x: x),
        ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 9, np.uint8)]), lambda x: x),
        (
            "bgra8",
            lambda x: np.dstack([x[:, :, ::-1], np.full(x.shape[:2], 9, np.uint8)]),
            lambda x: x,
        ),
        ("mono8", lambda x: x[:, :, 0], lambda x: np.repeat(x[:, :, :1], 3, 2)),
        ("8UC1", lambda x: x[:, :, 0], lambda x: np.repeat(x[:, :, :1], 3, 2)),
        (
            "mono16",
            lambda x: x[:, :, 0].astype(np.uint16) * 257,
            lambda x: np.repeat(x[:, :, :1], 3, 2),
        ),
        (
            "16UC1",
            lambda x: x[:, :, 0].astype(np.uint16) * 257,
            lambda x: np.repeat(x[:, :, :1], 3, 2),
        ),
    ],
)
def test_every_encoding_with_row_padding(encoding, make, expect, pad):
    out = image_to_rgb(
        raw_msg(np.ascontiguousarray(make(RGB)), encoding, pad=pad), use_cv_bridge=False
    )
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expect(RGB))


def test_encodings_are_all_tested():
    camera = CAMERA_ENCODINGS  # each tested in tests/ros/test_camera_encodings.py
    assert (
        set(SUPPORTED_ENCODINGS)
        == {"rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1"} | camera
    )


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_byte_order_and_scaling(bigendian):
    v = np.array([[0, 255, 256, 32768, 65535]], np.uint16)
    out = image_to_rgb(raw_msg(v, "mono16", pad=2, bigendian=bigendian), use_cv_bridge=False)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 1, 128, 255])


def test_unknown_encoding_says_what_is_supported():
    msg = raw_msg(RGB, "rgb8")
    msg.encoding = "bayer_rggb16"
    with pytest.raises(ConversionError, match="unsupported image encoding 'bayer_rggb16'.*rgb8"):
        image_to_rgb(msg, use_cv_bridge=False)


def test_empty_image_rejected():
    msg = Image(height=0, width=0, encoding="rgb8", step=0)
    with pytest.raises(ConversionError, match="empty image: 0x0"):
        image_to_rgb(msg, use_cv_bridge=False)


def test_short_data_and_small_step_rejected():
    msg = raw_msg(RGB, "rgb8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ConversionError, match="expected step\\*height"):
        image_to_rgb(msg, use_cv_bridge=False)
    msg = raw_msg(RGB, "rgb8")
    msg.step = 7 * 3 - 1
    with pytest.raises(ConversionError, match="step 20 is smaller than"):
        image_to_rgb(msg, use_cv_bridge=False)


def test_compressed_roundtrip_png_and_garbage():
    back = compressed_to_rgb(rgb_to_compressed(RGB, fmt="png"))
    np.testing.assert_array_equal(back, RGB)
    jpg = compressed_to_rgb(rgb_to_compressed(np.full((16, 16, 3), (10, 200, 30), np.uint8)))
    assert np.abs(jpg.astype(int) - (10, 200, 30)).max() <= 4  # channel order kept (RGB)
    with pytest.raises(ConversionError, match="could not decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not an image"))
    with pytest.raises(ConversionError, match="empty compressed"):
        compressed_to_rgb(CompressedImage(format="jpeg"))


def test_array_to_image_checks_dtype_and_roundtrips():
    ids = RNG.integers(0, 60000, (4, 6)).astype(np.uint16)
    msg = array_to_image(ids, "16UC1")
    assert (msg.step, msg.is_bigendian) == (12, int(sys.byteorder == "big"))
    np.testing.assert_array_equal(image_to_numpy(msg), ids)
    with pytest.raises(ValueError, match="32SC1 needs a int32 array"):
        array_to_image(ids, "32SC1")


def frame(h: int = 4, w: int = 6) -> PanopticFrame:
    sem = np.full((h, w), 0, np.uint8)
    sem[1:3, 1:4] = 13
    sem[0, 0] = 255
    inst = np.zeros((h, w), np.uint16)
    inst[1:3, 1:4] = 7
    return PanopticFrame(
        segment_map=(inst > 0).astype(np.int32),
        semantic=sem,
        instance_ids=inst,
        panoptic=sem.astype(np.int32) * 1000 + inst,
    )


def test_frame_to_images_keeps_header_and_decodes():
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msgs = frame_to_images(frame(), header)
    assert {n: m.encoding for n, m in msgs.items()} == {
        "panoptic": "32SC1",
        "instance_ids": "16UC1",
        "semantic": "mono8",
    }
    assert all(m.header == header and (m.height, m.width) == (4, 6) for m in msgs.values())
    sem, track = decode_panoptic(msgs["panoptic"], 1000)
    assert sem[1, 1] == 13 and track[1, 1] == 7 and sem[0, 0] == 255 and track[0, 0] == 0
    np.testing.assert_array_equal(image_to_numpy(msgs["instance_ids"]), frame().instance_ids)
    with pytest.raises(ValueError, match="unknown output 'depth'"):
        frame_to_images(frame(), header, ("depth",))


def test_labels_message():
    names = ("road", "car")
    msg = labels_to_msg(names, [1], [(1, 2, 3), (4, 5, 6)], 1000)
    doc = parse_labels(msg)
    assert doc["classes"] == {0: "road", 1: "car"} and doc["thing_ids"] == [1]
    assert doc["palette"][1] == (4, 5, 6) and doc["label_divisor"] == 1000
    assert json.loads(msg.data)["encodings"]["panoptic"] == "32SC1"
    with pytest.raises(ValueError, match="palette has 1 colours for 2 classes"):
        labels_to_msg(names, [1], [(1, 2, 3)], 1000)
