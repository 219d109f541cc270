"""Panoptic PNG formats: round trips through real files, folder layouts, VIPSeg codes, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vknet_core.panoptic_io import (
    PanopticFolder,
    PanopticFormatError,
    decode_kitti_step,
    decode_vipseg,
    encode_coco_panoptic,
    encode_kitti_step,
    encode_vipseg,
    read_kitti_step,
    read_png,
    read_vipseg,
    write_kitti_step,
    write_png,
    write_vipseg,
)


def kitti_frame(rng, H=6, W=7):
    sem = rng.integers(0, 19, size=(H, W))
    inst = np.where(np.isin(sem, (11, 13)), rng.integers(0, 999, size=(H, W)), 0)
    p = sem * 1000 + inst
    p[0, :3] = 255 * 1000
    return p.astype(np.int32)


def test_kitti_step_png_round_trip_and_channel_layout(tmp_path):
    rng = np.random.default_rng(0)
    pan = kitti_frame(rng)
    pan[1, 1] = 13 * 1000 + 300  # instance 300 -> G = 1, B = 44
    path = write_kitti_step(tmp_path / "000002_000005.png", pan)
    raw = read_png(path)
    assert raw.dtype == np.uint8 and raw.shape == pan.shape + (3,)
    assert tuple(raw[1, 1]) == (13, 1, 44)  # R = semantic, G*256+B = instance
    np.testing.assert_array_equal(read_kitti_step(path), pan)
    # a 2^16 divisor is lossless for the full 16-bit instance range
    wide = pan.astype(np.int64) // 1000 * 65536 + pan % 1000
    wide[2, 2] = 11 * 65536 + 40000
    np.testing.assert_array_equal(decode_kitti_step(encode_kitti_step(wide, 65536), 65536), wide)


def test_kitti_step_void_ignores_instance_bits_and_big_instances_are_refused():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 3, 4)  # void with junk instance bits
    rgb[1, 1] = (13, 4, 0)  # instance 1024
    with pytest.raises(PanopticFormatError, match="instance id 1024"):
        decode_kitti_step(rgb)
    out = decode_kitti_step(rgb, label_divisor=65536)
    assert out[0, 0] == 255 * 65536 and out[1, 1] == 13 * 65536 + 1024
    with pytest.raises(ValueError, match="semantic <= 255"):
        encode_kitti_step(np.array([[300 * 1000]]))


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_kitti_step_folder_layouts_give_the_same_keys(tmp_path, layout):
    rng = np.random.default_rng(1)
    frames = {(2, f): kitti_frame(rng) for f in range(3)} | {(6, 0): kitti_frame(rng)}
    for (s, f), pan in frames.items():
        if layout == "nested":  # deeplab2: panoptic_maps/val/SEQ(%04d)/FRAME(%06d).png
            write_kitti_step(tmp_path / "panoptic_maps" / "val" / f"{s:04d}" / f"{f:06d}.png", pan)
        else:  # Video K-Net: {seq:06d}_{frame:06d}_panoptic.png beside the images
            write_kitti_step(tmp_path / f"{s:06d}_{f:06d}_panoptic.png", pan)
            write_png(tmp_path / f"{s:06d}_{f:06d}_leftImg8bit.png", np.zeros((6, 7, 3), np.uint8))
    folder = PanopticFolder(tmp_path, "kitti_step")
    assert folder.sequences() == ["000002", "000006"]
    assert folder.frames("000002") == ["000000", "000001", "000002"]
    got = list(folder.read("000002"))
    for f in range(3):
        np.testing.assert_array_equal(got[f], frames[(2, f)])


def test_kitti_step_folder_errors(tmp_path):
    with pytest.raises(PanopticFormatError, match="not found"):
        PanopticFolder(tmp_path / "nope", "kitti_step")
    with pytest.raises(PanopticFormatError, match="no kitti_step panoptic label files"):
        PanopticFolder(tmp_path, "kitti_step")
    write_kitti_step(tmp_path / "a" / "0002" / "000000.png", np.zeros((2, 2), np.int64))
    write_kitti_step(tmp_path / "000002_000000_panoptic.png", np.zeros((2, 2), np.int64))
    with pytest.raises(PanopticFormatError, match="two files for sequence 000002 frame 000000"):
        PanopticFolder(tmp_path, "kitti_step")
    with pytest.raises(ValueError, match="unknown panoptic format"):
        PanopticFolder(tmp_path, "coco")


def test_vipseg_codes():
    # category 2 is a thing (train id 0), category 0 stuff (train id 58), 200 a known bad value
    mask = np.array([[0, 1, 3, 301], [302, 200, 124, 3]], np.uint16)
    out = decode_vipseg(mask)
    assert out.tolist() == [
        [255000, 58000, 0, 2],
        [3, 255000, 57000, 0],
    ]  # 124: thing 123, no instance
    with pytest.raises(PanopticFormatError, match="stuff categories"):
        decode_vipseg(np.array([[150]], np.uint16))  # (0 + 1) * 100 + 50: category 0 is stuff
    with pytest.raises(PanopticFormatError, match="outside"):
        decode_vipseg(np.array([[12600]], np.uint16))


def test_vipseg_round_trip_through_a_16_bit_png(tmp_path):
    rng = np.random.default_rng(2)
    sem = rng.integers(0, 124, size=(5, 6))
    inst = np.where(sem < 58, rng.integers(0, 101, size=sem.shape), 0)
    pan = sem * 1000 + inst
    pan[0, 0] = 255000
    path = write_vipseg(tmp_path / "panomasks" / "vid_a" / "00000001.png", pan)
    assert read_png(path).dtype == np.uint16
    np.testing.assert_array_equal(read_vipseg(path), pan)
    folder = PanopticFolder(tmp_path, "vipseg")
    assert folder.sequences() == ["vid_a"] and folder.frames("vid_a") == ["00000001"]
    with pytest.raises(ValueError, match="at most 100 instances"):
        encode_vipseg(np.array([[5 * 1000 + 101]]))
    with pytest.raises(ValueError, match="stuff without instances"):
        encode_vipseg(np.array([[100 * 1000 + 1]]))


def test_cityscapes_vps_coco_video_round_trip(tmp_path):
    """Two frames as COCO panoptic (PNG + json), read back: tracks consistent, crowd kept."""
    things = tuple(range(11, 19))
    f0 = np.array([[0, 0, 13005, 13005], [11000, 11000, 13007, 255000]])  # 11000: person crowd
    f1 = np.array([[0, 13007, 13005, 13005], [11000, 8000, 8000, 255000]])
    annotations = []
    for i, f in enumerate((f0, f1)):
        rgb, info = encode_coco_panoptic(f, things)
        name = f"0005_{i:04d}_frankfurt_000000_{i:06d}_final_mask.png"
        write_png(tmp_path / "panoptic_video" / name, rgb)
        annotations.append({"file_name": name, "image_id": name[:-15], "segments_info": info})
    crowd = [s for s in annotations[0]["segments_info"] if s["iscrowd"]]
    assert [s["category_id"] for s in crowd] == [11]
    (tmp_path / "panoptic_gt_val_city_vps.json").write_text(
        json.dumps({"annotations": annotations})
    )
    folder = PanopticFolder(tmp_path, "cityscapes_vps", things=things)
    assert folder.sequences() == ["0005"] and folder.frames("0005") == ["0000", "0001"]
    g0, g1 = folder.read("0005")
    # thing tracks are renumbered 1, 2 per video in order of first appearance, consistently
    assert g0.tolist() == [[0, 0, 13001, 13001], [11000, 11000, 13002, 255000]]
    assert g1.tolist() == [[0, 13002, 13001, 13001], [11000, 8000, 8000, 255000]]
