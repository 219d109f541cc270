"""Offline run: image folders and video files -> KITTI-STEP PNGs + overlay video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import vknet_core
from vknet_training.offline_run import kitti_step_png
from vknet_training.run_video import main, run_video


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    vknet_core.save_checkpoint(vknet_core.build_model("tiny").eval(), path)
    return path


def frames(n, hw=(60, 90), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, hw + (3,), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def read_png(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None, path
    return bgr[..., ::-1]


def count_video_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_image_folder_kitti_names_and_sequences(tiny_ckpt, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for seq in (3, 4):
        for i, rgb in enumerate(frames(2, seed=seq)):
            cv2.imwrite(str(src / f"{seq:06d}_{i:06d}_leftImg8bit.png"), rgb[..., ::-1])
            # a KITTI-STEP folder may hold the label PNGs too: they are not frames
            cv2.imwrite(str(src / f"{seq:06d}_{i:06d}_panoptic.png"), rgb)
    s = run_video(tiny_ckpt, src, tmp_path / "out", progress=False)
    assert s.frames == 4 and s.video is not None and s.resets == 1
    names = sorted(p.name for p in s.png_dir.iterdir())
    assert names == [f"{q:06d}_{i:06d}_panoptic.png" for q in (3, 4) for i in range(2)]
    png = read_png(s.png_dir / names[0])
    assert png.shape == (60, 90, 3) and png.dtype == np.uint8
    assert set(np.unique(png[..., 0])) <= set(range(19)) | {255}
    assert count_video_frames(s.video) == 4
    assert set(s.mean_ms) >= {"network", "merge", "tracker"}


def test_video_file_input_and_cli(tiny_ckpt, tmp_path):
    video = tmp_path / "in.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (90, 60))
    assert w.isOpened()
    for rgb in frames(5):
        w.write(np.ascontiguousarray(rgb[..., ::-1]))
    w.release()
    out = tmp_path / "out"
    rc = main(
        [
            "--checkpoint",
            str(tiny_ckpt),
            "--input",
            str(video),
            "--output",
            str(out),
            "--max-frames",
            "3",
            "--sequence",
            "7",
            "--net-size",
            "64",
            "96",
        ]
    )
    assert rc == 0
    names = sorted(p.name for p in (out / "panoptic").iterdir())
    assert names == [f"000007_{i:06d}_panoptic.png" for i in range(3)]
    assert read_png(out / "panoptic" / names[0]).shape == (60, 90, 3)
    assert count_video_frames(out / "overlay.mp4") == 3
    # a second run into the same folder replaces the results (no stale PNGs, no staging left)
    assert (
        main(
            [
                "--checkpoint",
                str(tiny_ckpt),
                "--input",
                str(video),
                "--output",
                str(out),
                "--max-frames",
                "2",
                "--no-video",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "panoptic").iterdir()) == [
        f"000000_{i:06d}_panoptic.png" for i in range(2)
    ]
    assert sorted(p.name for p in out.iterdir()) == ["panoptic"]  # the old video went too


def test_png_encoding_round_trips_through_the_dataset_decoder():
    from vknet_core.panoptic_io import decode_kitti_step as decode_kitti_step_png
    from vknet_core.types import PanopticFrame

    sem = np.array([[0, 11, 255], [13, 13, 2]], np.uint8)
    inst = np.array([[0, 300, 0], [1, 2, 0]], np.uint16)
    frame = PanopticFrame(
        segment_map=np.zeros((2, 3), np.int32),
        semantic=sem,
        instance_ids=inst,
        panoptic=sem.astype(np.int32) * 1000 + inst,
    )
    decoded = decode_kitti_step_png(kitti_step_png(frame))
    expected = np.where(sem == 255, 255000, sem.astype(np.int64) * 1000 + inst)
    np.testing.assert_array_equal(decoded, expected)


def test_missing_input_is_a_clear_error(tiny_ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected a video file"):
        run_video(tiny_ckpt, tmp_path / "nope.mp4", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        run_video(tiny_ckpt, tmp_path / "empty", tmp_path / "out", progress=False)
