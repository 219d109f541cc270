"""Dataset readers (KITTI-STEP, Cityscapes-VPS, VIPSeg), PairDataset and collate_pairs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vknet_core.config import get_preset
from vknet_core.panoptic_io import PanopticFolder, PanopticFormatError
from vknet_core.panoptic_io import decode_kitti_step as decode_kitti_step_png
from vknet_core.panoptic_io import encode_kitti_step as encode_kitti_step_png
from vknet_training.datasets import (
    CityscapesVPSVideo,
    DatasetFormatError,
    KittiStepVideo,
    PairDataset,
    VideoReader,
    VIPSegVideo,
    build_reader,
    build_targets,
    collate_pairs,
)
from vknet_training.datasets.vipseg import CATEGORY_TO_TRAIN_ID
from vknet_training.make_synthetic import make_synthetic

CFG = get_preset("tiny")  # KITTI-STEP labels: things person 11 -> model 0, car 13 -> model 1


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, sequences=2, frames=8, height=96, width=192, seed=0)
    return root


class MemoryReader(VideoReader):
    """In-memory frames, for exact control over the content of a pair."""

    def __init__(self, frames: dict[int, list[tuple[np.ndarray, np.ndarray]]]):
        self.root, self.split, self.frames = Path("memory"), "test", frames

    def sequences(self):
        return sorted(self.frames)

    def num_frames(self, seq):
        return len(self.frames[seq])

    def frame_paths(self, seq, idx):
        return Path(f"memory/{seq}_{idx}.png"), Path(f"memory/{seq}_{idx}_panoptic.png")

    def read_frame(self, seq, idx):
        img, pan = self.frames[seq][idx]
        return img.copy(), pan.copy()


def _moving_car_reader(n: int = 5, h: int = 64, w: int = 96, dx: int = 4) -> MemoryReader:
    """A car (13, instance 5) moving right by ``dx`` px per frame over road/sky, plus a person."""
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n):
        pan = np.zeros((h, w), np.int64)  # road
        pan[:20] = 10 * 1000  # sky
        pan[30:46, 10 + dx * t : 34 + dx * t] = 13 * 1000 + 5
        pan[22:50, 70:76] = 11 * 1000 + 2
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        frames.append((img, pan))
    return MemoryReader({3: frames})


# ----------------------------------------------------------------------------- KITTI-STEP


def test_kitti_png_encoding_round_trip():
    rng = np.random.default_rng(0)
    sem = rng.choice([0, 1, 2, 11, 13, 255], size=(16, 24))
    inst = np.where(np.isin(sem, [11, 13]), rng.integers(0, 1000, size=(16, 24)), 0)
    pan = np.where(sem == 255, 255000, sem * 1000 + inst)
    png = encode_kitti_step_png(pan)
    assert png.dtype == np.uint8 and png.shape == (16, 24, 3)
    assert np.array_equal(png[..., 0], sem)
    decoded_inst = png[..., 1].astype(int) * 256 + png[..., 2]
    assert np.array_equal(decoded_inst, np.where(sem == 255, 0, inst))
    assert np.array_equal(decode_kitti_step_png(png), pan)
    too_big = np.zeros((2, 2, 3), np.uint8)
    too_big[0, 0] = (13, 4, 0)  # instance 1024
    with pytest.raises(ValueError, match="does not fit below label_divisor 1000"):
        decode_kitti_step_png(too_big)


def test_kitti_reader_round_trip_on_synthetic(synthetic):
    reader = KittiStepVideo(synthetic, "train")
    assert reader.sequences() == [0, 1] and reader.num_frames(0) == 8 and len(reader) == 16
    img, pan = reader.read_frame(1, 3)
    assert img.dtype == np.uint8 and img.shape == (96, 192, 3)
    assert pan.dtype == np.int64 and pan.shape == (96, 192)
    raw = cv2.imread(str(synthetic / "video_sequence/train/000001_000003_panoptic.png"))
    assert np.array_equal(pan // 1000, raw[..., 2])  # R channel (cv2 is BGR)
    raw_img = cv2.imread(str(synthetic / "video_sequence/train/000001_000003_leftImg8bit.png"))
    assert np.array_equal(img, raw_img[..., ::-1])
    assert reader.frame_name(1, 3) == "000001_000003"
    assert np.array_equal(reader.read_image(1, 3), img)
    assert isinstance(build_reader("kitti_step", synthetic, "train"), KittiStepVideo)
    with pytest.raises(IndexError, match="out of range"):
        reader.read_frame(1, 8)
    with pytest.raises(KeyError, match="sequence 7"):
        reader.read_frame(7, 0)


def test_kitti_reader_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="split folder not found.*video_sequence"):
        KittiStepVideo(tmp_path, "train")
    folder = tmp_path / "video_sequence" / "train"
    folder.mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="no KITTI-STEP frames"):
        KittiStepVideo(tmp_path, "train")

    img = np.zeros((8, 12, 3), np.uint8)
    _write_rgb(folder / "000000_000000_leftImg8bit.png", img)
    with pytest.raises(DatasetFormatError, match="have no panoptic PNG.*000000_000000_panoptic"):
        KittiStepVideo(tmp_path, "train")
    unlabelled = KittiStepVideo(tmp_path, "train", require_labels=False)
    assert unlabelled.read_image(0, 0).shape == (8, 12, 3)

    lab = folder / "000000_000000_panoptic.png"
    cv2.imwrite(str(lab), np.zeros((8, 12), np.uint8))  # grayscale
    reader = KittiStepVideo(tmp_path, "train")
    with pytest.raises(DatasetFormatError, match="3-channel uint8 PNG.*got shape \\(8, 12\\)"):
        reader.read_frame(0, 0)
    cv2.imwrite(str(lab), np.zeros((8, 12, 3), np.uint16))  # 16-bit colour
    with pytest.raises(DatasetFormatError, match="3-channel uint8 PNG.*uint16"):
        reader.read_frame(0, 0)
    cv2.imwrite(str(lab), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="size mismatch.*8x12.*8x10"):
        reader.read_frame(0, 0)
    lab.write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match="cannot decode"):
        reader.read_frame(0, 0)


# ----------------------------------------------------------------------------- Cityscapes-VPS


def _cityscapes_vps(root: Path) -> None:
    """Two videos, two annotated frames each, in the VPSNet layout."""
    h, w = 16, 20
    colours = {1: (10, 0, 0), 2: (20, 0, 0), 3: (0, 5, 1), 4: (7, 7, 7)}  # id = R + 256G + 65536B
    ids = {k: r + 256 * g + 65536 * b for k, (r, g, b) in colours.items()}
    images, annotations = [], []
    for vid in (1, 12):
        for fid in (4, 9):
            stem = f"{vid:04d}_{fid:04d}_frankfurt_000000_{fid:06d}"
            lab = np.zeros((h, w, 3), np.uint8)
            lab[:8] = colours[1]  # road (stuff)
            lab[8:, :10] = colours[2]  # sky (stuff)
            lab[8:, 10 + fid // 9 : 16] = colours[3]  # a car track, moves by 1 px
            lab[0:2, 18:] = colours[4]  # crowd persons
            lab[15, 19] = (99, 0, 0)  # a colour not in segments_info -> void
            _write_rgb(root / "val/panoptic_video" / f"{stem}_final_mask.png", lab)
            _write_rgb(
                root / "val/img" / f"{stem}_newImg8bit.png", np.full((h, w, 3), fid, np.uint8)
            )
            images.append(
                {"id": stem, "file_name": f"{stem}_newImg8bit.png", "width": w, "height": h}
            )
            annotations.append(
                {
                    "image_id": stem,
                    "file_name": f"{stem}_final_mask.png",
                    "segments_info": [
                        {"id": ids[1], "category_id": 0, "iscrowd": 0},
                        {"id": ids[2], "category_id": 10, "iscrowd": 0},
                        {"id": ids[3], "category_id": 13, "iscrowd": 0},
                        {"id": ids[4], "category_id": 11, "iscrowd": 1},
                    ],
                }
            )
    cats = [
        {"id": i, "name": n, "isthing": int(i >= 11)}
        for i, n in enumerate([f"c{i}" for i in range(19)])
    ]
    (root / "panoptic_gt_val_city_vps.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )


def test_cityscapes_vps_reader(tmp_path):
    _cityscapes_vps(tmp_path)
    reader = CityscapesVPSVideo(tmp_path, "val")
    assert reader.sequences() == [1, 12] and reader.num_frames(12) == 2
    assert reader.frame_name(12, 1) == "0012_0009_frankfurt_000000_000009"
    img, pan = reader.read_frame(12, 1)
    assert img.shape == (16, 20, 3) and (img == 9).all()
    assert pan[0, 0] == 0 and pan[10, 0] == 10000
    assert pan[10, 12] == 13001  # car: thing track number 1 of the video
    assert pan[0, 19] == 11000  # crowd thing -> instance 0
    assert pan[15, 19] == 255000  # unlisted colour -> void
    _, pan0 = reader.read_frame(12, 0)
    assert pan0[10, 10] == 13001 and pan[10, 10] != 13001  # same track id, the car moved
    assert isinstance(build_reader("cityscapes_vps", tmp_path, "val"), CityscapesVPSVideo)
    with pytest.raises(DatasetFormatError, match="panoptic_gt_train_city_vps.json"):
        CityscapesVPSVideo(tmp_path, "train")
    (tmp_path / "panoptic_gt_test_city_vps.json").write_text('{"images": []}')
    with pytest.raises(DatasetFormatError, match="not a COCO-panoptic json"):
        CityscapesVPSVideo(tmp_path, "test")


def test_cityscapes_vps_thing_rule_is_the_json_isthing_flag_in_both_readers(tmp_path):
    """One rule (metrics.md §3.1/§4: the categories' ``isthing``; Cityscapes-VPS flags 11..18)
    for the training reader and for evaluation folders, even when the caller's thing classes
    disagree (KITTI-STEP's person/car only): a rider (12) is a tracked thing."""
    h, w = 6, 8
    rider, road = (5, 0, 0), (9, 0, 0)
    lab = np.zeros((h, w, 3), np.uint8)
    lab[:3], lab[3:, 2:5] = road, rider
    stem = "0003_0000_frankfurt_000000_000000"
    _write_rgb(tmp_path / "val/panoptic_video" / f"{stem}_final_mask.png", lab)
    _write_rgb(tmp_path / "val/img" / f"{stem}_newImg8bit.png", np.zeros((h, w, 3), np.uint8))
    cats = [{"id": i, "name": f"c{i}", "isthing": int(i >= 11)} for i in range(19)]
    segs = [{"id": 9, "category_id": 0, "iscrowd": 0}, {"id": 5, "category_id": 12, "iscrowd": 0}]
    data = {
        "images": [{"id": stem, "file_name": f"{stem}_newImg8bit.png"}],
        "annotations": [
            {"image_id": stem, "file_name": f"{stem}_final_mask.png", "segments_info": segs}
        ],
        "categories": cats,
    }
    (tmp_path / "panoptic_gt_val_city_vps.json").write_text(json.dumps(data))
    (tmp_path / "val/panoptic_video/gt.json").write_text(json.dumps(data))

    _, from_reader = CityscapesVPSVideo(tmp_path, "val").read_frame(3, 0)
    folder = PanopticFolder(tmp_path / "val/panoptic_video", "cityscapes_vps", things=(11, 13))
    (from_folder,) = folder.read("0003")
    assert from_reader[4, 3] == 12001 and from_reader[0, 0] == 0 and from_reader[4, 0] == 255000
    np.testing.assert_array_equal(from_reader, from_folder)

    del data["categories"]  # a prediction json: the given thing classes decide
    (tmp_path / "val/panoptic_video/gt.json").write_text(json.dumps(data))
    (kitti_things,) = PanopticFolder(
        tmp_path / "val/panoptic_video", "cityscapes_vps", things=(11, 13)
    ).read("0003")
    assert kitti_things[4, 3] == 12000
    with pytest.raises(PanopticFormatError, match="no 'categories' with 'isthing' flags"):
        PanopticFolder(tmp_path / "val/panoptic_video", "cityscapes_vps")


# ----------------------------------------------------------------------------- VIPSeg


def test_vipseg_reader(tmp_path):
    (tmp_path / "train.txt").write_text("vidA\n")
    mask = np.zeros((6, 8), np.uint16)  # void
    mask[0] = 1  # category 0 (wall, stuff)
    mask[1] = 61 * 100 + 0  # category 60 (person, thing), instance 0
    mask[2] = 61 * 100 + 3  # category 60, instance 3
    mask[3] = 200  # the known bug value -> void
    mask[4] = 3  # category 2 (door: a thing category without an instance -> crowd)
    _write_rgb(tmp_path / "images/vidA/00001.jpg", np.zeros((6, 8, 3), np.uint8))
    (tmp_path / "panomasks/vidA").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "panomasks/vidA/00001.png"), mask)
    reader = VIPSegVideo(tmp_path, "train")
    assert reader.sequences() == [0] and reader.frame_name(0, 0) == "vidA/00001"
    _, pan = reader.read_frame(0, 0)
    person, wall, door = CATEGORY_TO_TRAIN_ID[60], CATEGORY_TO_TRAIN_ID[0], CATEGORY_TO_TRAIN_ID[2]
    assert person < 58 and door < 58 and wall >= 58  # preset vipseg_r50: things are 0..57
    assert (pan[0] == wall * 1000).all()
    assert (pan[1] == person * 1000 + 1).all() and (pan[2] == person * 1000 + 4).all()
    assert (pan[3] == 255000).all() and (pan[5] == 255000).all()
    assert (pan[4] == door * 1000).all()
    assert sorted(CATEGORY_TO_TRAIN_ID.values()) == list(range(124))

    mask[5] = 150  # instance code on category 0 (stuff)
    cv2.imwrite(str(tmp_path / "panomasks/vidA/00001.png"), mask)
    with pytest.raises(DatasetFormatError, match="00001.png.*instances of stuff categories"):
        reader.read_frame(0, 0)
    cv2.imwrite(str(tmp_path / "panomasks/vidA/00001.png"), np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="single-channel"):
        reader.read_frame(0, 0)
    with pytest.raises(DatasetFormatError, match="split list not found.*val.txt"):
        VIPSegVideo(tmp_path, "val")
    (tmp_path / "val.txt").write_text("missing_video\n")
    with pytest.raises(DatasetFormatError, match="video folder not found.*missing_video"):
        VIPSegVideo(tmp_path, "val")


# ----------------------------------------------------------------------------- targets


def test_build_targets_matches_a_slow_reference():
    rng = np.random.default_rng(1)
    pan = rng.choice([0, 2000, 10000, 11001, 11002, 13007, 11000, 255000], size=(32, 64))
    t = build_targets(pan, CFG.labels)
    ids = sorted({int(v) for v in np.unique(pan) if v // 1000 in (11, 13) and v % 1000 > 0})
    stuff_model = sorted(CFG.labels.train_to_model_id[s] for s in (0, 2, 10))
    assert t["instance_ids"].tolist() == ids + [-1] * 3
    thing_labels = [CFG.labels.train_to_model_id[i // 1000] for i in ids]
    assert t["labels"].tolist() == thing_labels + stuff_model
    assert t["is_thing"].tolist() == [True] * len(ids) + [False] * 3
    for k, i in enumerate(ids):
        ref = F.interpolate(
            torch.from_numpy(pan == i).float()[None, None],
            size=(16, 32),
            mode="bilinear",
            align_corners=False,
        )[0, 0]
        torch.testing.assert_close(t["masks"][k], ref)
    for k, m in enumerate(stuff_model):
        binary = pan // 1000 == CFG.labels.model_to_train_id[m]
        ref = F.interpolate(
            torch.from_numpy(binary).float()[None, None],
            size=(16, 32),
            mode="bilinear",
            align_corners=False,
        )[0, 0]
        torch.testing.assert_close(t["masks"][len(ids) + k], ref)
    sem_ref = np.vectorize(
        lambda v: 255 if v // 1000 == 255 else CFG.labels.train_to_model_id[v // 1000]
    )(pan[::2, ::2])
    assert np.array_equal(t["sem_seg"].numpy(), sem_ref)
    assert t["sem_seg"].dtype == torch.int64 and t["masks"].dtype == torch.float32
    empty = build_targets(np.full((4, 4), 255000), CFG.labels)
    assert empty["masks"].shape == (0, 2, 2) and (empty["sem_seg"] == 255).all()


# ----------------------------------------------------------------------------- PairDataset


def test_pair_dataset_item_contract(synthetic):
    ds = PairDataset(KittiStepVideo(synthetic, "train"), CFG, crop=(96, 192), seed=0)
    assert len(ds) == 16
    for i in range(len(ds)):
        item = ds[i]
        meta = item["meta"]
        assert meta["ref_index"] - meta["key_index"] in (-2, -1, 1, 2)
        assert 0 <= meta["ref_index"] < 8
        for name in ("key", "ref"):
            img, t = item[f"image_{name}"], item[f"targets_{name}"]
            _, hp, wp = img.shape
            assert img.dtype == torch.float32 and img.shape[0] == 3
            assert hp % 32 == 0 and wp % 32 == 0
            h, w = meta["image_size"]
            assert img[:, h:].abs().sum() == 0 and img[:, :, w:].abs().sum() == 0  # pad = 0
            m = t["masks"].shape[0]
            assert t["masks"].shape == (m, hp // 2, wp // 2) and t["masks"].dtype == torch.float32
            assert t["masks"].min() >= 0 and t["masks"].max() <= 1
            assert t["labels"].shape == (m,) and t["labels"].dtype == torch.int64
            thing = t["is_thing"]
            assert thing.dtype == torch.bool
            if name == "key":
                assert thing.sum() >= 1
            assert (t["labels"][thing] < 2).all() and (t["labels"][~thing] >= 2).all()
            assert (t["instance_ids"][~thing] == -1).all()
            assert (t["instance_ids"][thing] // 1000 >= 11).all()
            n_thing = int(thing.sum())
            assert thing[:n_thing].all() and not thing[n_thing:].any()  # things first
            assert t["sem_seg"].shape == (hp // 2, wp // 2)
            assert (t["sem_seg"][(h + 1) // 2 :] == 255).all()  # padding is ignored
        key_ids = set(item["targets_key"]["instance_ids"].tolist()) - {-1}
        ref_ids = set(item["targets_ref"]["instance_ids"].tolist()) - {-1}
        assert key_ids & ref_ids  # a key instance is present in the reference


def _centroid(mask: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(
        torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij"
    )
    s = mask.sum()
    return float((ys * mask).sum() / s), float((xs * mask).sum() / s)


@pytest.mark.parametrize("seed", range(6))
def test_pair_augmentation_is_identical_for_both_frames(seed):
    """The car moves +dx per frame; after the shared scale/flip/crop its stride-2 centroid moves
    by dx * offset * scale / 2 (negated when flipped) and the static person does not move."""
    dx = 4
    ds = PairDataset(_moving_car_reader(dx=dx), CFG, crop=(48, 80), scale=(0.8, 1.6), seed=seed)
    for i in range(len(ds)):
        item = ds[i]
        meta = item["meta"]
        offset = meta["ref_index"] - meta["key_index"]
        cents = {}
        for name in ("key", "ref"):
            t = item[f"targets_{name}"]
            cents[name] = {
                int(pid): _centroid(t["masks"][k])
                for k, pid in enumerate(t["instance_ids"].tolist())
                if pid > 0
            }
        shift = dx * offset * meta["scale"] / 2 * (-1 if meta["flip"] else 1)
        h2, w2 = (meta["image_size"][0] + 1) // 2, (meta["image_size"][1] + 1) // 2

        def whole(name, pid, item=item, h2=h2, w2=w2):  # not touching the crop's border
            t = item[f"targets_{name}"]
            m = t["masks"][t["instance_ids"].tolist().index(pid)]
            return (
                m[:, 0].sum() == 0
                and m[:, w2 - 1].sum() == 0
                and m[0].sum() == 0
                and m[h2 - 1].sum() == 0
            )

        if 13005 in cents["key"] and 13005 in cents["ref"]:
            (ky, kx), (ry, rx) = cents["key"][13005], cents["ref"][13005]
            assert abs(ry - ky) < 1e-4
            if whole("key", 13005) and whole("ref", 13005):
                assert abs(rx - kx - shift) < 0.75, (rx - kx, shift, meta)
        if 11002 in cents["key"] and 11002 in cents["ref"]:
            (ky, kx), (ry, rx) = cents["key"][11002], cents["ref"][11002]
            assert abs(ky - ry) < 1e-4 and abs(kx - rx) < 1e-4


def test_identical_frames_give_identical_pairs():
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pan = np.zeros((64, 96), np.int64)
    pan[10:30, 20:50] = 13001
    ds = PairDataset(MemoryReader({0: [(img, pan)] * 3}), CFG, crop=(40, 64), seed=0)
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["image_key"], item["image_ref"])
        for k in ("masks", "labels", "instance_ids", "sem_seg"):
            assert torch.equal(item["targets_key"][k], item["targets_ref"][k])


def test_pair_dataset_determinism(synthetic):
    reader = KittiStepVideo(synthetic, "train")
    a = PairDataset(reader, CFG, crop=(96, 192), seed=3)
    b = PairDataset(reader, CFG, crop=(96, 192), seed=3)
    c = PairDataset(reader, CFG, crop=(96, 192), seed=4)
    same, differ = [], []
    for i in (0, 5, 11):
        x, y, z = a[i], b[i], c[i]
        same.append(
            torch.equal(x["image_key"], y["image_key"])
            and x["meta"] == y["meta"]
            and torch.equal(x["targets_ref"]["masks"], y["targets_ref"]["masks"])
        )
        differ.append(x["meta"] != z["meta"])
    assert all(same) and any(differ)
    first = a[2]["meta"]
    a.set_epoch(1)
    assert a[2]["meta"] != first  # a new epoch draws new augmentation
    a.set_epoch(0)
    assert a[2]["meta"] == first
    ev = PairDataset(reader, CFG, crop=(96, 192), train=False)
    assert ev[0]["meta"]["flip"] is False and ev[0]["meta"]["scale"] == 1.0
    assert ev[0]["image_key"].shape == (3, 96, 192)


def test_resampling_skips_frames_without_things_or_shared_instances():
    h, w = 32, 32
    img = np.zeros((h, w, 3), np.uint8)
    empty = np.zeros((h, w), np.int64)
    car1 = empty.copy()
    car1[4:12, 4:12] = 13001
    car2 = empty.copy()
    car2[4:12, 4:12] = 13002
    # frame 0 and 2 have no things; frame 1 has car 1 and frame 3 car 2 (never shared)
    # frames 4, 5 share car 1 -> the only usable pairs are 4<->5
    frames = [(img, empty), (img, car1), (img, empty), (img, car2), (img, car1), (img, car1)]
    ds = PairDataset(
        MemoryReader({0: frames}), CFG, crop=(32, 32), scale=(1.0, 1.0), offsets=(-1, 1), seed=0
    )
    for i in range(len(ds)):
        meta = ds[i]["meta"]
        assert {meta["key_index"], meta["ref_index"]} == {4, 5}
    none = PairDataset(MemoryReader({0: [(img, empty)] * 3}), CFG, crop=(32, 32), max_attempts=10)
    with pytest.raises(RuntimeError, match="no usable key/reference pair after 10 attempts"):
        none[0]


def test_pair_dataset_errors():
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="no frame with a reference frame"):
        PairDataset(MemoryReader({0: [(img, np.zeros((32, 32), np.int64))]}), CFG)
    bad = np.full((32, 32), 40 * 1000, np.int64)
    ds = PairDataset(MemoryReader({0: [(img, bad)] * 2}), CFG, crop=(32, 32))
    with pytest.raises(ValueError, match="0_panoptic.png: semantic ids \\[40\\].*0..18 or 255"):
        ds[0]
    with pytest.raises(ValueError, match="offsets must be non-empty and non-zero"):
        PairDataset(MemoryReader({0: [(img, bad)] * 2}), CFG, offsets=(0, 1))


def test_collate_pairs_pads_to_the_largest_item():
    reader = _moving_car_reader(h=64, w=96)
    big = PairDataset(reader, CFG, crop=(64, 96), scale=(1.0, 1.0), seed=0)[0]
    small = PairDataset(reader, CFG, crop=(64, 96), scale=(0.5, 0.5), seed=0)[0]
    assert small["meta"]["image_size"] == (32, 48) and small["image_key"].shape == (3, 32, 64)
    assert big["image_key"].shape == (3, 64, 96)
    batch = collate_pairs([small, big])
    assert batch["image_key"].shape == batch["image_ref"].shape == (2, 3, 64, 96)
    assert torch.equal(batch["image_key"][0, :, :32, :64], small["image_key"])
    assert batch["image_key"][0, :, 32:].abs().sum() == 0
    t = batch["targets_key"][0]
    assert t["masks"].shape[1:] == (32, 48) and t["sem_seg"].shape == (32, 48)
    assert (t["sem_seg"][16:] == 255).all() and t["masks"][:, 16:].sum() == 0
    assert torch.equal(t["masks"][:, :16, :32], small["targets_key"]["masks"])
    assert torch.equal(batch["targets_key"][1]["masks"], big["targets_key"]["masks"])
    assert [m["seq"] for m in batch["meta"]] == [3, 3]
    with pytest.raises(ValueError, match="empty batch"):
        collate_pairs([])


def test_pair_dataset_in_a_dataloader_with_the_model_input_contract(synthetic):
    ds = PairDataset(KittiStepVideo(synthetic, "train"), CFG, crop=(96, 192), seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_pairs, num_workers=0)
    batch = next(iter(loader))
    x = batch["image_key"]
    assert x.dtype == torch.float32 and x.shape[0] == 2 and x.shape[2] % 32 == 0
    assert len(batch["targets_key"]) == 2 and len(batch["targets_ref"]) == 2
    # normalised: roughly zero-mean, unit-scale values
    assert -3.0 < float(x.mean()) < 3.0 and float(x.abs().max()) < 3.0


@pytest.mark.parametrize("seed", range(4))
def test_image_and_targets_stay_aligned(seed):
    """Car pixels are pure red in the image: wherever the stride-2 car mask is 1 the
    de-normalised image is red, wherever it is 0 (away from edges) it is not."""
    h, w = 64, 96
    img = np.zeros((h, w, 3), np.uint8)
    pan = np.zeros((h, w), np.int64)
    pan[20:44, 30:70] = 13001
    img[pan == 13001] = (255, 0, 0)
    ds = PairDataset(
        MemoryReader({0: [(img, pan)] * 2}), CFG, crop=(48, 64), scale=(0.7, 1.8), seed=seed
    )
    item = ds[0]
    mean = torch.tensor(CFG.pixel_mean).view(3, 1, 1)
    std = torch.tensor(CFG.pixel_std).view(3, 1, 1)
    rgb = item["image_key"] * std + mean  # [3, Hp, Wp]
    red = (rgb[0] > 200) & (rgb[1] < 50)  # [Hp, Wp]
    t = item["targets_key"]
    car = t["masks"][t["instance_ids"].tolist().index(13001)]  # [Hp/2, Wp/2]
    hh, ww = item["meta"]["image_size"]
    red2 = red[: hh // 2 * 2 : 2, : ww // 2 * 2 : 2]  # top-left pixel of each 2x2 block
    full, empty = car[: hh // 2, : ww // 2] == 1, car[: hh // 2, : ww // 2] == 0
    assert full.any()
    assert red2[full].all()
    assert not red2[empty].any()
