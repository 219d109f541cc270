"""training/evaluate.py: scoring folders of label PNGs (all three formats), the CLI, and the
online model mode (a fake pipeline, and a real tiny checkpoint on synthetic KITTI-STEP data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vknet_core.metrics import stq, vpq_windows
from vknet_core.panoptic_io import encode_coco_panoptic, write_kitti_step, write_png, write_vipseg
from vknet_core.types import PanopticFrame
from vknet_training.evaluate import EvalSettings, evaluate_folders, evaluate_model, main

THINGS = (11, 13)


def make_videos(seed=0, S=2, T=4, H=12, W=16):
    """KITTI-STEP-like GT (road/sidewalk/sky, moving cars and persons, a crowd patch, void) and a
    prediction with an id switch, a class flip and a false positive."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for s in range(S):
        gt = np.zeros((T, H, W), np.int64)
        gt[:, : H // 3] = 10 * 1000  # sky
        gt[:, H - 3 :] = 1 * 1000  # sidewalk
        gt[:, 0, :3] = 255 * 1000  # void
        for t in range(T):
            x = 2 + t + s
            gt[t, 5:9, x : x + 4] = 13 * 1000 + 1 + s  # car track
            gt[t, 4:9, 11:13] = 11 * 1000 + 4  # person track
            gt[t, 9, 0:2] = 11 * 1000  # person crowd
        pred = gt.copy()
        pred[T // 2 :][pred[T // 2 :] == 13 * 1000 + 1 + s] = 13 * 1000 + 9  # id switch
        pred[:, 10:12, 14:16] = 13 * 1000 + 7  # false positive car
        pred[0, 4:6, 11:13] = 12 * 1000  # class flip on part of the person
        noise = rng.random(gt.shape) < 0.05
        pred[noise] = 8 * 1000
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def direct(gts, preds, settings):
    s = stq(gts, preds, 19, settings.things, 1000, 255)
    v = vpq_windows(
        gts,
        preds,
        19,
        settings.things,
        1000,
        255,
        ks=settings.ks,
        frame_stride=settings.frame_stride,
    )
    return s, v


def write_kitti(gts, preds, tmp_path):
    for s, (g, p) in enumerate(zip(gts, preds)):
        for t in range(len(g)):
            write_kitti_step(
                tmp_path / "gt" / "panoptic_maps" / "val" / f"{s + 2:04d}" / f"{t:06d}.png", g[t]
            )
            write_kitti_step(tmp_path / "pred" / f"{s + 2:06d}_{t:06d}_panoptic.png", p[t])
    return tmp_path / "gt", tmp_path / "pred"


def test_kitti_step_folders_score_like_the_metric_functions(tmp_path):
    gts, preds = make_videos()
    gt_dir, pred_dir = write_kitti(gts, preds, tmp_path)
    settings = EvalSettings.for_dataset("kitti_step")
    assert settings.things == THINGS and settings.ks == (0, 1, 2, 3)
    res = evaluate_folders(gt_dir, pred_dir, "kitti_step", progress=False)
    s, v = direct(gts, preds, settings)
    assert res["num_sequences"] == 2 and res["num_frames"] == 8
    assert res["STQ"] == pytest.approx(s["STQ"], abs=1e-12) and 0 < res["STQ"] < 1
    assert res["AQ"] == pytest.approx(s["AQ"], abs=1e-12)
    assert res["stq"]["sequence_ids"] == ["000002", "000003"]
    for k in ("k0", "k1", "k2", "k3", "mean"):
        assert res["vpq"][k]["VPQ"] == pytest.approx(v[k]["VPQ"], abs=1e-12)
    assert res["VPQ"] == pytest.approx(v["mean"]["VPQ"], abs=1e-12)
    car = res["per_class"]["13"]
    assert (
        car["name"] == "car"
        and car["thing"]
        and car["PQ"]["k0"] == pytest.approx(v["k0"]["per_class"]["13"]["pq"])
    )
    assert res["per_class"]["2"]["IoU"] is None  # building: absent from GT and prediction
    json.dumps(res, allow_nan=False)  # strict JSON


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    gts, preds = make_videos(seed=1)
    gt_dir, pred_dir = write_kitti(gts, preds, tmp_path)
    out = tmp_path / "m" / "metrics.json"
    rc = main(
        [
            "--gt",
            str(gt_dir),
            "--pred",
            str(pred_dir),
            "--format",
            "kitti_step",
            "--out",
            str(out),
            "--vpq-k",
            "0,1",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "STQ" in text and "VPQ" in text and "car" in text and "PQ k1" in text
    data = json.loads(out.read_text())
    s = stq(gts, preds, 19, THINGS)
    assert data["STQ"] == pytest.approx(s["STQ"], abs=1e-12)
    assert set(data["vpq"]) == {"k0", "k1", "mean"}
    # the Video K-Net void-masking convention is a flag
    rc = main(
        [
            "--gt",
            str(gt_dir),
            "--pred",
            str(pred_dir),
            "--format",
            "kitti_step",
            "--out",
            str(out),
            "--mask-void",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert json.loads(out.read_text())["STQ"] == pytest.approx(
        stq(gts, preds, 19, THINGS, mask_void=True)["STQ"]
    )


def test_missing_and_mismatched_prediction_files_are_clear_errors(tmp_path, capsys):
    gts, preds = make_videos(seed=2)
    gt_dir, pred_dir = write_kitti(gts, preds, tmp_path)
    (pred_dir / "000003_000002_panoptic.png").unlink()
    with pytest.raises(
        FileNotFoundError,
        match="1 of 8 GT frames have no prediction.*sequence 000003 frame 000002",
    ):
        evaluate_folders(gt_dir, pred_dir, "kitti_step", progress=False)
    rc = main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--format", "kitti_step"])
    err = capsys.readouterr().err
    assert rc == 2 and "no prediction" in err and err.count("\n") == 1
    write_kitti_step(pred_dir / "000003_000002_panoptic.png", preds[1][2][:, :10])
    with pytest.raises(
        ValueError, match="size mismatch: GT .*000002.png is 12x16 but prediction .* is 12x10"
    ):
        evaluate_folders(gt_dir, pred_dir, "kitti_step", progress=False)
    with pytest.raises(SystemExit):
        main(["--gt", str(gt_dir), "--format", "kitti_step"])  # --pred missing


def test_cityscapes_vps_coco_folders(tmp_path):
    things = tuple(range(11, 19))
    gts, preds = make_videos(seed=3, S=1, T=3)
    for name, vids in (("gt", gts), ("pred", preds)):
        anns = []
        for t, frame in enumerate(vids[0]):
            rgb, info = encode_coco_panoptic(frame, things)
            fn = f"0001_{t * 5:04d}_frankfurt_000000_{t:06d}_final_mask.png"
            write_png(
                tmp_path / name / ("panoptic_video" if name == "gt" else "pan_pred") / fn, rgb
            )
            anns.append({"file_name": fn, "segments_info": info})
        (tmp_path / name / f"{name}.json").write_text(json.dumps({"annotations": anns}))
    res = evaluate_folders(tmp_path / "gt", tmp_path / "pred", "cityscapes_vps", progress=False)
    settings = EvalSettings.for_dataset("cityscapes_vps")
    assert settings.ks == (0, 5, 10, 15) and settings.frame_stride == 5
    s = stq(gts, preds, 19, things)
    v = vpq_windows(gts, preds, 19, things, ks=(0, 5, 10, 15), frame_stride=5)
    assert res["STQ"] == pytest.approx(s["STQ"], abs=1e-12)
    assert res["vpq"]["k10"]["VPQ"] == pytest.approx(v["k10"]["VPQ"], abs=1e-12)
    assert res["vpq"]["k15"]["num_windows"] == 0  # 3 annotated frames: no 4-frame window


def test_vipseg_folders(tmp_path):
    settings = EvalSettings.for_dataset("vipseg")
    assert settings.num_classes == 124 and settings.things == tuple(range(58))
    gts, preds = make_videos(seed=4, S=1, T=3)
    # KITTI classes -> VIPSeg train ids: cars/persons to things 3/5, the rest to stuff (>= 58)
    table = np.full(256, 255)
    table[[0, 1, 8, 10, 12, 13, 11]] = [60, 61, 68, 70, 72, 3, 5]
    gts = [table[g // 1000] * 1000 + g % 1000 for g in gts]
    preds = [table[p // 1000] * 1000 + p % 1000 for p in preds]
    for t in range(3):
        write_vipseg(tmp_path / "gt" / "panomasks" / "vid" / f"{t:08d}.png", gts[0][t])
        write_vipseg(tmp_path / "pred" / "vid" / f"{t:08d}.png", preds[0][t])
    res = evaluate_folders(tmp_path / "gt", tmp_path / "pred", "vipseg", settings, progress=False)
    s = stq(gts, preds, 124, settings.things)
    assert res["STQ"] == pytest.approx(s["STQ"], abs=1e-12) and res["AQ"] > 0


class ReplayPipeline:
    """A fake pipeline: replays stored predictions and records how it is driven."""

    def __init__(self, preds, divisor=1000):
        self.preds, self.divisor = preds, divisor
        self.resets, self.seq, self.t = 0, -1, 0

    def reset(self):
        self.resets += 1
        self.seq, self.t = self.seq + 1, 0

    def step(self, rgb):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3
        p = self.preds[self.seq][self.t]
        self.t += 1
        if self.divisor != 1000:
            p = p // 1000 * self.divisor + p % 1000
        sem = (p // self.divisor).astype(np.uint8)
        return PanopticFrame(
            segment_map=np.zeros(p.shape, np.int32),
            semantic=sem,
            instance_ids=(p % self.divisor).astype(np.uint16),
            panoptic=p.astype(np.int32),
            label_divisor=self.divisor,
        )


@pytest.mark.parametrize("divisor", [1000, 65536])
def test_evaluate_model_with_a_pipeline(divisor):
    gts, preds = make_videos(seed=5)
    sequences = [
        [(np.zeros(g.shape[1:] + (3,), np.uint8), g[t]) for t in range(len(g))] for g in gts
    ]
    pipe = ReplayPipeline(preds, divisor)
    settings = EvalSettings.for_dataset("kitti_step")
    res = evaluate_model(sequences, pipe, settings, progress=False)
    s, v = direct(gts, preds, settings)
    assert pipe.resets == 2
    assert res["STQ"] == pytest.approx(s["STQ"], abs=1e-12)
    assert res["vpq"]["mean"]["VPQ"] == pytest.approx(v["mean"]["VPQ"], abs=1e-12)


def test_model_mode_runs_a_tiny_checkpoint_on_synthetic_kitti_step(tmp_path, capsys):
    pytest.importorskip("vknet_core.pipeline")
    synth = pytest.importorskip("vknet_training.make_synthetic")
    import torch

    import vknet_core

    synth.make_synthetic(
        tmp_path / "data", sequences=2, frames=2, height=64, width=96, seed=0, split="val"
    )
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny")
    vknet_core.save_checkpoint(model, tmp_path / "tiny.pt")
    out = tmp_path / "metrics.json"
    rc = main(
        [
            "--checkpoint",
            str(tmp_path / "tiny.pt"),
            "--data",
            str(tmp_path / "data"),
            "--split",
            "val",
            "--out",
            str(out),
            "--no-progress",
            "--vpq-k",
            "0,1",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert (
        data["num_sequences"] == 2 and data["num_frames"] == 4 and data["format"] == "kitti_step"
    )
    assert 0.0 <= data["SQ"] <= 1.0 and set(data["vpq"]) == {"k0", "k1", "mean"}
    assert "STQ" in capsys.readouterr().out


@pytest.mark.parametrize(
    "dataset, ks, stride",
    [
        ("kitti_step", (0, 1, 2, 3), 1),
        ("cityscapes_vps", (0, 5, 10, 15), 5),
        ("vipseg", (0, 1, 3, 5, 7), 1),
    ],
)
def test_training_validation_uses_the_datasets_vpq_windows(dataset, ks, stride, monkeypatch):
    """validate.validate_model hands the model's dataset windows to the one evaluate_model."""
    from dataclasses import replace

    import vknet_core
    from vknet_core.config import get_preset
    from vknet_training import validate

    preset = {
        "kitti_step": "kitti_step_r50",
        "cityscapes_vps": "cityscapes_vps_r50",
        "vipseg": "vipseg_r50",
    }[dataset]
    model = vknet_core.build_model(replace(get_preset("tiny"), labels=get_preset(preset).labels))
    seen = {}

    def spy(frames, pipeline, settings, **kw):
        seen["settings"] = settings
        gts, preds = make_videos(seed=7, S=1, T=2)
        sequences = [
            [(np.zeros(g.shape[1:] + (3,), np.uint8), g[t]) for t in range(len(g))] for g in gts
        ]
        return evaluate_model(sequences, ReplayPipeline(preds, 1000), settings, progress=False)

    class Reader:
        label_divisor = 1000

        def sequences(self):
            return [0]

        def num_frames(self, seq):
            return 2

    monkeypatch.setattr(validate, "evaluate_model", spy)
    scores = validate.validate_model(model.train(), Reader())
    assert seen["settings"].ks == ks and seen["settings"].frame_stride == stride
    assert seen["settings"].num_classes == model.cfg.labels.num_classes
    assert set(scores) >= {"STQ", "VPQ", "VPQ_k0", "frames"} and model.training
