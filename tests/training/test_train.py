"""Training CLI: single process vs torchrun (gloo) give the same losses, resume continues the
same loss curve, a non-finite loss stops training, curves and checkpoints are written."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import vknet_core
from vknet_core.losses import LossConfig
from vknet_training.make_synthetic import make_synthetic
from vknet_training.train import TrainConfig, lr_factor, main, parse_args, train
from vknet_training.validate import main as validate_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, sequences=2, frames=6, height=64, width=128, seed=0)
    make_synthetic(root, sequences=1, frames=4, height=64, width=128, seed=1, split="val")
    return root


def _cfg(data, out, **kw):
    base = dict(
        preset="tiny",
        data=data,
        out=out,
        iters=2,
        batch_size=2,
        crop=(64, 128),
        scale=(0.75, 1.25),
        warmup_iters=2,
        log_every=1,
        ckpt_every=2,
        workers=0,
        threads=1,
        norm_eval=True,
        progress=False,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def _losses(run: Path, key="loss"):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if r["kind"] == "train"}


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    return env


def test_single_process_equals_torchrun_gloo(data, tmp_path):
    single = tmp_path / "single"
    final = train(_cfg(data, single))
    assert final == single / "model_final.pt" and final.is_file()
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    ddp = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--nproc_per_node=2",
        "--standalone",
        str(REPO / "training/train.py"),
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--out",
        str(ddp),
        "--iters",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "64",
        "128",
        "--scale",
        "0.75",
        "1.25",
        "--warmup-iters",
        "2",
        "--log-every",
        "1",
        "--ckpt-every",
        "2",
        "--workers",
        "0",
        "--threads",
        "1",
        "--norm-eval",
        "on",
        "--no-progress",
        "--seed",
        "3",
        "--device",
        "cpu",
    ]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a, b = _losses(single), _losses(ddp)
    assert sorted(a) == sorted(b) == [1, 2]
    assert b[1] == pytest.approx(a[1], rel=1e-5)  # same weights, same data, same loss
    assert b[2] == pytest.approx(a[2], rel=1e-4)  # after one all-reduced update
    for key in ("loss_cls_s2", "loss_track", "loss_rpn_seg_ref"):
        assert _losses(ddp, key)[1] == pytest.approx(_losses(single, key)[1], rel=1e-5)


def test_resume_continues_the_same_loss_curve(data, tmp_path):
    full = tmp_path / "full"
    train(_cfg(data, full, iters=4, warmup_iters=3))
    part = tmp_path / "part"
    train(_cfg(data, part, iters=2, warmup_iters=3))
    assert (part / "last.pt").is_file() and (part / "last.state.pt").is_file()
    train(_cfg(data, part, iters=4, warmup_iters=3, resume=part))
    a, b = _losses(full), _losses(part)
    assert sorted(b) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step
    assert _losses(part, "lr")[4] == pytest.approx(_losses(full, "lr")[4])
    m_full = vknet_core.load_checkpoint(full / "model_final.pt")
    m_part = vknet_core.load_checkpoint(part / "model_final.pt")
    for (k, v), w in zip(m_full.state_dict().items(), m_part.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_non_finite_loss_stops(data, tmp_path):
    cfg = _cfg(data, tmp_path / "nan", loss=replace(LossConfig(), rpn_seg=float("inf")))
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 0: .*loss_rpn_seg="):
        train(cfg)
    assert not cfg.out.exists()  # failed before its first checkpoint: the run folder is gone


def test_cli_writes_checkpoint_curves_validation_and_tensorboard(data, tmp_path):
    out = tmp_path / "cli"
    rc = main(
        [
            "--preset",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(out),
            "--iters",
            "2",
            "--batch-size",
            "1",
            "--crop",
            "64",
            "128",
            "--workers",
            "0",
            "--threads",
            "1",
            "--val-data",
            str(data),
            "--log-every",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    model = vknet_core.load_checkpoint(out / "model_final.pt")
    assert model.cfg.name == "tiny" and not model.training
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["frames"] == 4
    assert all(0.0 <= val[0][k] <= 1.0 for k in ("STQ", "AQ", "SQ"))
    assert (out / "curves.png").stat().st_size > 1000
    assert any((out / "tb").iterdir())
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["iters"] == 2
    # the standalone scorer gives the same numbers as the validation inside training
    assert (
        validate_main(
            [
                "--checkpoint",
                str(out / "model_final.pt"),
                "--data",
                str(data),
                "--json",
                str(out / "scores.json"),
            ]
        )
        == 0
    )
    scores = json.loads((out / "scores.json").read_text())
    assert scores["STQ"] == pytest.approx(val[0]["STQ"]) and scores["frames"] == 4


def test_arguments_and_schedule():
    cfg = parse_args(
        [
            "--preset",
            "tiny",
            "--data",
            "d",
            "--out",
            "o",
            "--crop",
            "64",
            "96",
            "--iters",
            "1200",
            "--norm-eval",
            "on",
        ]
    )
    assert cfg.crop == (64, 96) and cfg.norm_eval is True and cfg.lr == 1e-4
    assert lr_factor(0, cfg) == pytest.approx(1e-3)
    assert lr_factor(500, cfg) == pytest.approx(1 - 0.999 * 0.5)
    assert lr_factor(899, cfg) == pytest.approx(1 - 0.999 * 101 / 1000)  # decay at 900 of 1200
    assert lr_factor(1000, cfg) == pytest.approx(0.1)
    assert lr_factor(1100, cfg) == pytest.approx(0.01)
    with pytest.raises(SystemExit):
        parse_args(["--preset", "tiny", "--data", "d"])  # --out is required


def test_bad_batch_size_and_missing_resume(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_cfg(data, tmp_path / "r", resume=tmp_path / "nothing"))
    with pytest.raises(ValueError, match="--iters"):
        train(_cfg(data, tmp_path / "r", iters=0))


def test_norm_eval_keeps_batchnorm_statistics_through_training_and_validation(data, tmp_path):
    """--norm-eval on: the backbone freezes BatchNorm (one place, the backbone's train()), also
    after a validation switched the model to eval and back."""
    out = tmp_path / "bn"
    train(_cfg(data, out, iters=2, val_data=data, val_every=1, norm_eval=True))
    frozen = vknet_core.load_checkpoint(out / "model_final.pt").state_dict()
    stats = [k for k in frozen if k.endswith("running_mean")]
    assert stats and all(not frozen[k].any() for k in stats)  # still the initial zeros
    assert all(int(frozen[k.replace("running_mean", "num_batches_tracked")]) == 0 for k in stats)
    train(_cfg(data, tmp_path / "bn_off", iters=1, norm_eval=False))
    moving = vknet_core.load_checkpoint(tmp_path / "bn_off" / "model_final.pt").state_dict()
    assert any(moving[k].any() for k in stats)  # the statistics do train when not frozen
