"""run_video on recorded ROS 2 bags: bags in (sqlite3, MCAP, .mcap file; Image and
CompressedImage), a result bag out, track resets like the node, and every kind of bad input.

The frame-for-frame comparison with the live node is in ``tests/ros/test_bag_vs_node.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vknet_core
from tests.training.bag_files import TOPIC, bag_order, read_bag, synthetic_frames, write_camera_bag
from vknet_core.image_encodings import image_to_numpy
from vknet_core.pipeline import VideoPanopticPipeline
from vknet_core.sequence_break import SequenceBreaks
from vknet_training.run_video import main, run_video

N = 4
HW = (96, 160)
OUTPUTS = {
    "panoptic": ("32SC1", np.int32),
    "instance_ids": ("16UC1", np.uint16),
    "semantic": ("mono8", np.uint8),
    "overlay": ("rgb8", np.uint8),
}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    vknet_core.save_checkpoint(vknet_core.build_model("tiny").eval(), path)
    return path


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(N, HW)


def check_result_bag(path, rec, ns="/vknet_node", overlay=True):
    """Counts, order, headers, log times, encodings, sizes and the panoptic identity."""
    got = read_bag(path)
    names = [n for n in OUTPUTS if overlay or n != "overlay"]
    assert sorted(got) == sorted([f"{ns}/labels"] + [f"{ns}/{n}" for n in names])
    assert bag_order(path)[0] == f"{ns}/labels", "labels must come first"
    assert len(got[f"{ns}/labels"]) == 1
    labels = json.loads(got[f"{ns}/labels"][0][1].data)
    div = labels["label_divisor"]
    for name in names:
        msgs = got[f"{ns}/{name}"]
        assert len(msgs) == len(rec.raw), name
        assert [t for t, _ in msgs] == rec.log_times, name
        for (_, m), h in zip(msgs, rec.headers):
            assert m.header == h, name
            enc, dtype = OUTPUTS[name]
            assert (m.encoding, m.height, m.width) == (enc, *HW), name
            assert image_to_numpy(m).dtype == dtype
    for (_, pan), (_, sem), (_, inst) in zip(
        *(got[f"{ns}/{n}"] for n in ("panoptic", "semantic", "instance_ids"))
    ):
        np.testing.assert_array_equal(
            image_to_numpy(pan), image_to_numpy(sem).astype(np.int32) * div + image_to_numpy(inst)
        )
    return got, labels


@pytest.mark.parametrize(
    "storage,fmt", [("sqlite3", "raw"), ("mcap-file", "raw"), ("sqlite3", "png")]
)
def test_bag_in_result_bag_out(tiny_ckpt, frames, tmp_path, storage, fmt):
    rec = write_camera_bag(tmp_path / "drive", frames, storage=storage, fmt=fmt)
    s = run_video(
        tiny_ckpt,
        rec.path,
        tmp_path / "out",
        bag_out=tmp_path / "res",
        bag_overlay=True,
        progress=False,
    )
    assert s.frames == N and s.bag == tmp_path / "res"
    assert s.bag_messages == 1 + 4 * N
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["metadata.yaml", "res.mcap"]
    got, labels = check_result_bag(tmp_path / "res", rec)
    assert labels["classes"]["13"] == "car" and labels["ignore_label"] == 255
    # the PNGs hold the same frames
    pngs = sorted(s.png_dir.iterdir())
    assert [p.name for p in pngs] == [f"000000_{i:06d}_panoptic.png" for i in range(N)]
    import cv2

    png = cv2.imread(str(pngs[-1]), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(png[..., 0], image_to_numpy(got["/vknet_node/semantic"][-1][1]))


def test_bag_values_equal_the_pipeline_with_node_resets(tiny_ckpt, tmp_path, capsys):
    """Stamp back (bag loop) and resolution change reset the tracks exactly where the node's
    rule does; every value equals a direct pipeline run with those resets."""
    frames = synthetic_frames(3, HW) + synthetic_frames(2, (64, 96), seed=5)
    stamps = [10 * 10**9, 11 * 10**9, 5 * 10**9, 6 * 10**9, 7 * 10**9]
    rec = write_camera_bag(tmp_path / "loop", frames, stamps, storage="mcap")
    rc = main(
        [
            "--checkpoint",
            str(tiny_ckpt),
            "--input",
            str(rec.path),
            "--bag-out",
            str(tmp_path / "res"),
            "--namespace",
            "cam_front/vknet_node",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out.splitlines()[0]
    assert out.startswith(f"5 frames from bag {TOPIC} in ") and "fps), 2 track resets" in out
    assert f"bag {tmp_path / 'res'} (16 messages)" in out
    got = read_bag(tmp_path / "res")
    pipe = VideoPanopticPipeline.from_checkpoint(tiny_ckpt)
    breaks = SequenceBreaks()
    reasons = []
    for i, (rgb, stamp) in enumerate(zip(frames, stamps)):
        reason = breaks.check(stamp, rgb.shape[:2])
        if reason:
            reasons.append(reason)
            pipe.reset()
        f = pipe.step(rgb)
        for name, ref in (
            ("panoptic", f.panoptic),
            ("instance_ids", f.instance_ids),
            ("semantic", f.semantic),
        ):
            m = got[f"/cam_front/vknet_node/{name}"][i][1]
            np.testing.assert_array_equal(image_to_numpy(m), ref, err_msg=f"{name} frame {i}")
    assert reasons == ["time jumped back by 6.000 s", "resolution changed from 160x96 to 96x64"]


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_camera_encodings_decode_as_in_the_node(frames, tmp_path, encoding):
    """Raw encodings with row padding (and big-endian 16-bit data) come out as the node sees
    them: the same RGB as the original frame (grey for mono)."""
    from tests.training.bag_files import camera_msg
    from vknet_training.bag_reader import ImageBag, typestore

    ts = typestore()
    rgb = frames[0]
    h, w = rgb.shape[:2]
    grey = (rgb.astype(np.uint16).sum(2) // 3).astype(np.uint8)
    planes = {
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full((h, w), 7, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.zeros((h, w), np.uint8)]),
        "mono8": grey[..., None],
        "mono16": (grey.astype(">u2") * 257)[..., None],
    }
    arr = planes[encoding]
    row = arr.reshape(h, -1).view(np.uint8)
    padded = np.concatenate([row, np.full((h, 6), 99, np.uint8)], 1)  # step > width * bpp
    msg = camera_msg(rgb, 5 * 10**9)
    msg.encoding, msg.step, msg.data = encoding, padded.shape[1], padded.reshape(-1)
    msg.is_bigendian = int(encoding == "mono16")
    from rosbags.rosbag2 import Writer

    with Writer(tmp_path / "enc", version=8) as wr:
        c = wr.add_connection(TOPIC, msg.__msgtype__, typestore=ts)
        wr.write(c, 1, ts.serialize_cdr(msg, msg.__msgtype__))
    with ImageBag.open(tmp_path / "enc") as bag:
        (f,) = list(bag.frames())
    expect = np.repeat(grey[..., None], 3, 2) if encoding.startswith("mono") else rgb
    np.testing.assert_array_equal(f.rgb, expect)


def test_overlay_video_codec_is_reported(tiny_ckpt, frames, tmp_path):
    import cv2

    from vknet_training.overlay_video import CODECS, video_codec

    rec = write_camera_bag(tmp_path / "drive", frames[:2])
    s = run_video(tiny_ckpt, rec.path, tmp_path / "out", progress=False)
    cap = cv2.VideoCapture(str(s.video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    codec = video_codec()
    assert n == 2 and s.video_codec == CODECS[codec]
    # the MP4 sample description names the codec: avc1 (H.264) or mp4v (MPEG-4 Part 2)
    stsd = s.video.read_bytes().split(b"stsd", 1)[1][:64]
    assert codec.encode() in stsd, stsd


def run_main(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("run_video.py: ")]
    return rc, lines


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "corrupt_yaml",
        "corrupt_db",
        "cut_mcap",
        "no_topic",
        "not_image",
        "several",
        "truncated",
        "bad_encoding",
        "no_metadata",
    ],
)
def test_bad_bags_one_line_and_nothing_written(tiny_ckpt, frames, tmp_path, capsys, case):
    bag = tmp_path / "drive"
    topic = None
    if case == "missing":
        expect = "does not exist"
    elif case == "corrupt_yaml":
        write_camera_bag(bag, frames[:1])
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
        expect = "cannot read bag"
    elif case == "corrupt_db":
        write_camera_bag(bag, frames[:1])
        (bag / "drive.db3").write_bytes(b"\0" * 4096)
        expect = "cannot read bag .*file is not a database"
    elif case == "cut_mcap":  # recording killed before the MCAP footer was written
        rec = write_camera_bag(tmp_path / "rec", frames[:2], storage="mcap-file")
        bag = tmp_path / "cut.mcap"
        bag.write_bytes(rec.path.read_bytes()[:-100])
        expect = "cannot read bag .*cut.mcap: .*expected a rosbag2 folder"
    elif case == "no_topic":
        write_camera_bag(bag, frames[:1])
        topic = "/cam_rear/image_raw"
        expect = f"topic /cam_rear/image_raw is not in bag .*image topics: {TOPIC} \\(Image"
    elif case == "not_image":
        write_camera_bag(bag, frames[:1], extra=[("/rosout_text", "std_msgs/msg/String")])
        topic = "/rosout_text"
        expect = "is std_msgs/msg/String, not sensor_msgs/msg/Image or"
    elif case == "several":
        write_camera_bag(
            bag,
            frames[:1],
            extra=[("/cam_rear/image/compressed", "sensor_msgs/msg/CompressedImage")],
        )
        expect = "2 image topics; choose one with --topic: /cam_front/image_raw \\(Image"
    elif case == "truncated":  # the 3rd message was cut: frames 0-1 run, then the error
        rec = write_camera_bag(tmp_path / "ok", frames[:3])
        write_camera_bag(bag, frames[:3], corrupt={2: rec.raw[2][: len(rec.raw[2]) // 2]})
        expect = (
            f"message 2 of {TOPIC} \\(log time .* s\\) in bag .* is truncated or "
            "corrupt: cannot read sensor_msgs/msg/Image from"
        )
    elif case == "bad_encoding":
        import tests.training.bag_files as bf

        rec = write_camera_bag(tmp_path / "ok", frames[:2])
        ts = bf.typestore()
        msg = ts.deserialize_cdr(rec.raw[1], rec.msgtype)
        msg.encoding = "64FC1"
        write_camera_bag(bag, frames[:2], corrupt={1: bytes(ts.serialize_cdr(msg, rec.msgtype))})
        expect = "message 1 of .*unsupported image encoding '64FC1'"
    else:
        write_camera_bag(bag, frames[:1])
        (bag / "metadata.yaml").unlink()
        expect = "holds bag storage \\(drive.db3\\) but no metadata.yaml"
    args = [
        "--checkpoint",
        str(tiny_ckpt),
        "--input",
        str(bag),
        "--output",
        str(tmp_path / "out" / "png"),
        "--bag-out",
        str(tmp_path / "res" / "bag"),
    ]
    rc, lines = run_main(args + (["--topic", topic] if topic else []), capsys)
    assert rc == 2 and len(lines) == 1, lines
    import re

    assert re.search(expect, lines[0]), lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "res").exists()


def test_bad_arguments_are_refused_before_anything_is_written(tiny_ckpt, frames, tmp_path, capsys):
    rec = write_camera_bag(tmp_path / "drive", frames[:1])
    (tmp_path / "taken").mkdir()
    video = tmp_path / "in.mp4"
    cases = [
        (["--bag-out", str(tmp_path / "taken")], "already exists"),
        (["--bag-out", str(tmp_path / "r.mcap")], "names a storage file"),
        (["--bag-out", str(tmp_path / "r"), "--namespace", "/bad name"], "not a ROS 2 topic"),
        ([], "nothing to write: give --output"),
        (["--output", str(tmp_path / "o"), "--alpha", "2"], "--alpha must be within 0..1"),
        (["--output", str(tmp_path / "o"), "--net-size", "100", "96"], "multiples of 32"),
    ]
    for extra, expect in cases:
        rc, lines = run_main(
            ["--checkpoint", str(tiny_ckpt), "--input", str(rec.path)] + extra, capsys
        )
        assert rc == 2 and len(lines) == 1 and expect in lines[0], (extra, lines)
    import cv2

    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (160, 96))
    w.write(np.zeros((96, 160, 3), np.uint8))
    w.release()
    for extra, expect in [
        (["--bag-out", str(tmp_path / "r")], "--bag-out needs a bag"),
        (["--output", str(tmp_path / "o"), "--topic", "/x"], "--topic /x applies to bags only"),
    ]:
        rc, lines = run_main(
            ["--checkpoint", str(tiny_ckpt), "--input", str(video)] + extra, capsys
        )
        assert rc == 2 and len(lines) == 1 and expect in lines[0], (extra, lines)
    rc, lines = run_main(
        [
            "--checkpoint",
            str(tmp_path / "none.pt"),
            "--input",
            str(rec.path),
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert rc == 2 and "checkpoint" in lines[0] and "does not exist" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive", "in.mp4", "taken"]
