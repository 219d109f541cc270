"""Synthetic KITTI-STEP video generator: layout, PNG encoding, tracks, determinism, speed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vknet_core.synthetic_scene import make_sequence
from vknet_training.datasets import KittiStepVideo
from vknet_training.make_synthetic import main, make_synthetic

STUFF = {0, 1, 2, 8, 10}
THINGS = {11, 13}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    paths = make_synthetic(root, sequences=2, frames=30, seed=0)
    return root, paths


def test_official_layout_and_file_names(data):
    root, paths = data
    folder = root / "video_sequence" / "train"
    assert len(paths) == 60 and paths == sorted(paths)
    assert paths[0] == folder / "000000_000000_panoptic.png"
    assert paths[-1] == folder / "000001_000029_panoptic.png"
    for p in paths:
        assert p.is_file()
        assert p.with_name(p.name.replace("_panoptic", "_leftImg8bit")).is_file()


def test_png_encoding_is_kitti_step(data):
    """R = semantic train id, G*256+B = instance id; images are 8-bit RGB."""
    root, paths = data
    raw = cv2.imread(str(paths[5]), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == (192, 384, 3)
    r, g, b = (
        raw[..., 2].astype(np.int64),
        raw[..., 1].astype(np.int64),
        raw[..., 0].astype(np.int64),
    )
    inst = g * 256 + b
    assert set(np.unique(r)) <= STUFF | THINGS
    assert (inst[np.isin(r, list(STUFF))] == 0).all()  # stuff carries no instance
    assert (inst[np.isin(r, list(THINGS))] > 0).all()  # every thing pixel has a track id
    _, pan = KittiStepVideo(root, "train").read_frame(0, 5)
    assert np.array_equal(pan, r * 1000 + inst)
    img = cv2.imread(str(paths[5]).replace("_panoptic", "_leftImg8bit"), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint8 and img.shape == (192, 384, 3)


def test_every_stuff_class_and_both_thing_classes_appear(data):
    root, _ = data
    reader = KittiStepVideo(root, "train")
    for seq in reader.sequences():
        sems = set()
        for idx in range(reader.num_frames(seq)):
            sems |= set(np.unique(reader.read_frame(seq, idx)[1] // 1000).tolist())
        assert STUFF <= sems and THINGS <= sems, (seq, sems)


def test_tracks_are_stable_move_enter_and_leave(data):
    root, _ = data
    reader = KittiStepVideo(root, "train")
    left = 0
    for seq in reader.sequences():
        n = reader.num_frames(seq)
        pans = [reader.read_frame(seq, i)[1] for i in range(n)]
        ids_per_frame = [set(np.unique(p[p % 1000 > 0]).tolist()) for p in pans]
        all_ids = set().union(*ids_per_frame)
        # an instance id belongs to exactly one class for the whole sequence
        inst_class: dict[int, int] = {}
        for pid in all_ids:
            assert inst_class.setdefault(pid % 1000, pid // 1000) == pid // 1000
        # objects enter and leave: the set of visible tracks changes over the sequence
        assert ids_per_frame[0] != ids_per_frame[-1]
        assert any(ids_per_frame[t] - ids_per_frame[t - 1] for t in range(1, n))  # entering
        left += sum(len(ids_per_frame[t - 1] - ids_per_frame[t]) for t in range(1, n))
        # a track seen in many frames moves (centroid x changes)
        long_tracks = [i for i in all_ids if sum(i in s for s in ids_per_frame) >= 10]
        assert long_tracks
        moved = False
        for pid in long_tracks:
            xs = [np.nonzero(p == pid)[1].mean() for p in pans if (p == pid).any()]
            moved |= max(xs) - min(xs) > 5
        assert moved
    assert left > 0  # objects leave the view (or get fully occluded)


def test_objects_occlude_each_other(data):
    """Some instance's bounding box holds pixels of another instance drawn over it."""
    root, _ = data
    reader = KittiStepVideo(root, "train")
    found = 0
    for seq in reader.sequences():
        for idx in range(reader.num_frames(seq)):
            pan = reader.read_frame(seq, idx)[1]
            for pid in np.unique(pan[pan % 1000 > 0]):
                ys, xs = np.nonzero(pan == pid)
                box = pan[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
                others = box[(box % 1000 > 0) & (box != pid)]
                found += int(others.size > 20)
    assert found > 0


def test_deterministic_for_a_seed_and_different_across_seeds(tmp_path):
    a = make_synthetic(tmp_path / "a", sequences=1, frames=4, height=96, width=192, seed=7)
    b = make_synthetic(tmp_path / "b", sequences=1, frames=4, height=96, width=192, seed=7)
    c = make_synthetic(tmp_path / "c", sequences=1, frames=4, height=96, width=192, seed=8)
    for pa, pb, pc in zip(a, b, c):
        for suffix in ("_panoptic", "_leftImg8bit"):
            fa, fb, fc = (str(p).replace("_panoptic", suffix) for p in (pa, pb, pc))
            assert open(fa, "rb").read() == open(fb, "rb").read()
        assert open(pa, "rb").read() != open(pc, "rb").read()
    assert make_sequence(np.random.default_rng(3), 2, 96, 192)[0][0].shape == (96, 192, 3)


def test_cli_writes_a_readable_split(tmp_path, capsys):
    rc = main(
        [
            "--out",
            str(tmp_path),
            "--sequences",
            "2",
            "--frames",
            "3",
            "--height",
            "64",
            "--width",
            "128",
            "--seed",
            "1",
            "--split",
            "val",
        ]
    )
    assert rc == 0
    reader = KittiStepVideo(tmp_path, "val")
    assert reader.sequences() == [0, 1] and reader.num_frames(1) == 3
    img, pan = reader.read_frame(1, 2)
    assert img.shape == (64, 128, 3) and pan.shape == (64, 128)
    assert "wrote 6 frames" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 32x32"):
        make_sequence(np.random.default_rng(0), frames=2, height=16, width=64)
    with pytest.raises(SystemExit):
        main([])  # --out is required


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "0"], "frames >= 1, got 4 and 0"),
        (["--height", "16"], "at least 32x32, got 16x128"),
        (["--split", "../escape"], "split must be a plain folder name"),
    ],
)
def test_cli_rejects_bad_arguments_before_writing(tmp_path, capsys, args, message):
    out = tmp_path / "new_root"
    rc = main(
        [
            "--out",
            str(out),
            "--sequences",
            "4",
            "--frames",
            "2",
            "--height",
            "32",
            "--width",
            "128",
            *args,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert err[0].startswith("make_synthetic.py: error: ")
    assert not out.exists()


def test_existing_split_is_refused_and_a_failed_run_leaves_nothing(tmp_path, capsys, monkeypatch):
    val = tmp_path / "video_sequence" / "val"
    make_synthetic(tmp_path, sequences=3, frames=1, height=32, width=64, split="val")
    rc = main(
        [
            "--out",
            str(tmp_path),
            "--sequences",
            "1",
            "--frames",
            "2",
            "--height",
            "32",
            "--width",
            "64",
            "--split",
            "val",
        ]
    )  # an earlier run is replaced, not mixed
    assert rc == 0 and KittiStepVideo(tmp_path, "val").sequences() == [0]
    assert len(list(val.iterdir())) == 4 and list(val.parent.iterdir()) == [val]  # no temp
    (val / "notes.txt").write_text("mine")
    before = sorted(p.name for p in val.iterdir())
    rc = main(
        [
            "--out",
            str(tmp_path),
            "--frames",
            "1",
            "--height",
            "32",
            "--width",
            "64",
            "--split",
            "val",
        ]
    )
    assert (
        rc == 2
        and "holds more than synthetic frames (e.g. 'notes.txt')" in capsys.readouterr().err
    )
    assert sorted(p.name for p in val.iterdir()) == before

    import vknet_training.make_synthetic as ms

    calls = []

    def failing_write(path, rgb):  # the disk fills up on the third file
        calls.append(path)
        if len(calls) == 3:
            raise OSError(f"could not write {path}")
        cv2.imwrite(str(path), rgb)

    monkeypatch.setattr(ms, "_write_png", failing_write)
    out = tmp_path / "fresh"
    rc = main(
        ["--out", str(out), "--sequences", "2", "--frames", "2", "--height", "32", "--width", "64"]
    )
    assert rc == 2 and "could not write" in capsys.readouterr().err
    assert not out.exists()
