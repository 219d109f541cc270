"""Camera encodings decoded through OpenCV, each against an independent reference conversion.

YUV: frames are encoded here with the BT.601 studio-range equations (the ones OpenCV's 4:2:2 and
4:2:0 decoders invert) on images whose colour is constant over each chroma block, so the decoded
RGB must equal the original up to rounding; a swapped U/V or byte order is off by far more.
Bayer: the mosaic is sampled here from smooth RGB ramps (R along x, B along y), so a bilinear
demosaic must give back the ramps inside the border; a wrong pattern swaps R and B.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs", reason="sensor_msgs (ros-sensor-msgs wheel) is not installed")

from sensor_msgs.msg import Image

from vknet_core.image_encodings import SUPPORTED_ENCODINGS, ConversionError, decode_rgb
from vknet_ros.conversions import image_to_rgb

# the camera encodings this file tests (test_conversions.py checks none is left untested)
CAMERA_ENCODINGS = frozenset(
    {"yuv422", "yuv422_yuy2", "nv21", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8"}
    | {"bayer_grbg8", "rgb16", "bgr16"}
)

H, W = 8, 12


def blocks(bh: int, bw: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB [H, W, 3], constant over bh x bw blocks (saturated and grey colours)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (H // bh, W // bw, 3), dtype=np.uint8)
    small[0, 0], small[0, 1] = (255, 0, 0), (0, 0, 255)
    return np.repeat(np.repeat(small, bh, 0), bw, 1)


def yuv601(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference RGB -> (Y, U, V) float, ITU-R BT.601 studio range."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return tuple(np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, u, v))


def msg(
    data: np.ndarray, encoding: str, h: int = H, w: int = W, pad: int = 0, bigendian: bool = False
) -> Image:
    rows = data.reshape(data.shape[0], -1)
    if rows.dtype.itemsize > 1:
        rows = rows.astype(rows.dtype.newbyteorder(">" if bigendian else "<")).view(np.uint8)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    m = Image(
        height=h, width=w, encoding=encoding, step=rows.shape[1], is_bigendian=int(bigendian)
    )
    m.data = rows.tobytes()
    return m


def packed_422(rgb: np.ndarray, order: str) -> np.ndarray:
    """[H, W, 2] bytes in ``order`` ("UYVY" or "YUYV") for 2 x 1 chroma blocks."""
    y, u, v = yuv601(rgb)
    out = np.empty((H, W // 2, 4), np.uint8)
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u[:, 0::2], "V": v[:, 0::2]}
    names = ["U", "Y0", "V", "Y1"] if order == "UYVY" else ["Y0", "U", "Y1", "V"]
    for i, n in enumerate(names):
        out[:, :, i] = planes[n]
    return out.reshape(H, W, 2)


def nv21(rgb: np.ndarray) -> np.ndarray:
    y, u, v = yuv601(rgb)
    vu = np.stack([v[0::2, 0::2], u[0::2, 0::2]], axis=-1).reshape(H // 2, W)
    return np.concatenate([y, vu], axis=0)  # [1.5 H, W]


@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize(
    "encoding,bh,bw,make",
    [
        ("yuv422", 1, 2, lambda x: packed_422(x, "UYVY")),
        ("yuv422_yuy2", 1, 2, lambda x: packed_422(x, "YUYV")),
        ("nv21", 2, 2, nv21),
    ],
)
def test_yuv_encodings_match_the_bt601_reference(encoding, bh, bw, make, pad):
    rgb = blocks(bh, bw)
    out = image_to_rgb(msg(make(rgb), encoding, pad=pad), use_cv_bridge=False)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    err = np.abs(out.astype(int) - rgb.astype(int))
    assert err.max() <= 3, (encoding, err.max())


def ramps() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([20 + 15 * xx, np.full_like(xx, 100), 30 + 20 * yy], -1).astype(np.uint8)


@pytest.mark.parametrize(
    "encoding,pattern",
    [
        ("bayer_rggb8", "RGGB"),
        ("bayer_bggr8", "BGGR"),
        ("bayer_gbrg8", "GBRG"),
        ("bayer_grbg8", "GRBG"),
    ],
)
def test_bayer_patterns_demosaic_to_the_sampled_image(encoding, pattern):
    rgb = ramps()
    mosaic = np.empty((H, W), np.uint8)
    for i, c in enumerate(pattern):  # top-left 2 x 2 cell: [0,0] [0,1] / [1,0] [1,1]
        dy, dx = divmod(i, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, "RGB".index(c)]
    out = image_to_rgb(msg(mosaic, encoding, pad=2), use_cv_bridge=False)
    inner = (slice(2, -2), slice(2, -2))
    err = np.abs(out[inner].astype(int) - rgb[inner].astype(int))
    assert err.max() <= 2, (encoding, err.max())


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["rgb16", "bgr16"])
def test_16_bit_colour_scales_full_range(encoding, bigendian):
    rgb = blocks(1, 1, seed=3)
    src = rgb if encoding == "rgb16" else rgb[:, :, ::-1]
    data = src.astype(np.uint16) * 257  # 8-bit value v is 16-bit v * 257
    out = image_to_rgb(msg(data, encoding, bigendian=bigendian), use_cv_bridge=False)
    np.testing.assert_array_equal(out, rgb)


def test_new_encodings_are_supported_and_checked():
    new = CAMERA_ENCODINGS
    assert new <= set(SUPPORTED_ENCODINGS)
    with pytest.raises(ConversionError, match="even width"):
        decode_rgb(msg(np.zeros((H, W - 1, 2), np.uint8), "yuv422", w=W - 1))
    with pytest.raises(ConversionError, match="image data has"):  # the chroma rows are missing
        decode_rgb(msg(np.zeros((H, W), np.uint8), "nv21"))
