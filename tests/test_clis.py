"""Every command-line tool fails the same way: one line on stderr, a non-zero exit, no
traceback, and nothing new on disk.

``CASES`` is one table: a row is (tool, what is wrong) -> the arguments, a piece of the expected
message and the exit code. A row's arguments are built from ``Inputs`` (bad and good files made
once) and ``out``, an empty folder where the tool would write; after the failure ``out`` must
still be empty and the inputs unchanged. To cover a new tool, add its rows (and, if it needs
one, a file to ``Inputs``).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

import vknet_core
from vknet_core.config import get_preset
from vknet_training.make_synthetic import make_synthetic

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inputs:
    root: Path
    data: Path  # synthetic KITTI-STEP layout, splits train and val
    good_pt: Path  # a tiny checkpoint
    corrupt_pt: Path  # the same file, truncated
    other_pt: Path  # a checkpoint of another preset (tiny network, VIPSeg's 124 classes)
    missing: Path  # a path that does not exist
    official_kitti: Path  # official-format file whose meta config says KITTI-STEP
    official_pickled: Path  # official-format file whose meta needs full unpickling
    metrics_wrong: Path  # JSON lines without training steps


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("cli_inputs")
    data = root / "data"
    make_synthetic(data, sequences=1, frames=4, height=64, width=96, seed=0, split="train")
    make_synthetic(data, sequences=1, frames=3, height=64, width=96, seed=1, split="val")
    torch.manual_seed(0)
    good = vknet_core.save_checkpoint(vknet_core.build_model("tiny"), root / "good.pt")
    corrupt = root / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:2000])
    other_cfg = replace(
        get_preset("tiny"), name="tiny_vipseg", labels=get_preset("vipseg_r50").labels
    )
    other = vknet_core.save_checkpoint(vknet_core.build_model(other_cfg), root / "other.pt")
    sd = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}
    torch.save(
        {
            "state_dict": sd,
            "meta": {
                "exp_name": "video_knet_s3_r50_rpn_1x_kitti_step_sigmoid_stride2_mask_embed"
                "_link_ffn"
                "_joint_train.py",
                "config": "dataset_type = 'KITTISTEPDVPSDataset'\ndata_root = 'data/kitti-step/'",
            },
        },
        root / "official_kitti.pth",
    )
    torch.save(
        {"state_dict": sd, "meta": {"epoch": np.float64(12.0)}}, root / "official_pickled.pth"
    )
    (root / "metrics_wrong.jsonl").write_text(json.dumps({"STQ": 0.5, "VPQ": 0.4}) + "\n")
    return Inputs(
        root,
        data,
        good,
        corrupt,
        other,
        root / "missing.pt",
        root / "official_kitti.pth",
        root / "official_pickled.pth",
        root / "metrics_wrong.jsonl",
    )


@dataclass(frozen=True)
class Case:
    main: str  # "module:function" taking argv, returning the exit code
    argv: Callable[[Inputs, Path], list[str]]  # (inputs, empty output folder) -> arguments
    expect: str  # a piece of the one line on stderr
    code: int = 2  # 2: an error the user can fix


TRAIN = "vknet_training.train:main"
EVALUATE = "vknet_training.evaluate:main"
VALIDATE = "vknet_training.validate:main"
PLOT = "vknet_training.plot_curves:main"
SUMMARY = "vknet_core.summary:main"
CONVERT = "vknet_export.convert_official:main"
TO_ONNX = "vknet_export.to_onnx:main"
RUN_VIDEO = "vknet_training.run_video:main"
COMPARE = "vknet_export.compare:main"
TO_TRT = "vknet_export.to_trt:main"
QUANTIZE = "vknet_training.quantize:main"
MAKE_SYNTHETIC = "vknet_training.make_synthetic:main"


def _train(i: Inputs, o: Path, *extra: str, preset: str = "tiny") -> list[str]:
    return [
        "--preset",
        preset,
        "--data",
        str(i.data),
        "--out",
        str(o / "run"),
        "--iters",
        "1",
        "--crop",
        "64",
        "96",
        "--workers",
        "0",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def _run_video(i: Inputs, o: Path, checkpoint: Path) -> list[str]:
    frames = i.data / "video_sequence" / "val"  # KITTI-STEP frames (+ label PNGs, skipped)
    return ["--checkpoint", str(checkpoint), "--input", str(frames), "--output", str(o / "r")]


def _quantize(i: Inputs, o: Path, onnx: Path) -> list[str]:
    return ["--onnx", str(onnx), "--output", str(o / "q.onnx"), "--calib-data", str(i.data)] + [
        "--val-data",
        str(i.data),
    ]


def _model(i: Inputs, o: Path, checkpoint: Path) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--data", str(i.data), "--split", "val"]


CASES: dict[str, Case] = {
    "run_video-missing": Case(
        RUN_VIDEO, lambda i, o: _run_video(i, o, i.missing), "missing.pt does not exist"
    ),
    "run_video-corrupt": Case(
        RUN_VIDEO, lambda i, o: _run_video(i, o, i.corrupt_pt), "not a readable vknet checkpoint"
    ),
    "run_video-missing-input": Case(
        RUN_VIDEO,
        lambda i, o: (
            ["--checkpoint", str(i.good_pt), "--input", str(i.missing)]
            + ["--output", str(o / "r")]
        ),
        "does not exist; expected a video file",
    ),
    "compare-missing": Case(
        COMPARE,
        lambda i, o: ["--a", f"torch:{i.missing}", "--b", f"torch:{i.good_pt}"],
        "torch model file not found",
    ),
    "compare-corrupt": Case(
        COMPARE,
        lambda i, o: ["--a", f"torch:{i.corrupt_pt}", "--b", f"torch:{i.good_pt}"],
        "not a readable vknet checkpoint",
    ),
    "compare-two-presets": Case(
        COMPARE,
        lambda i, o: ["--a", f"torch:{i.good_pt}", "--b", f"torch:{i.other_pt}"],
        "compare needs two backends of the same model",
    ),
    "to_trt-missing": Case(
        TO_TRT,
        lambda i, o: ["--onnx", str(i.missing), "--output", str(o / "m.engine")],
        "ONNX model not found",
    ),
    "quantize-missing": Case(
        QUANTIZE, lambda i, o: _quantize(i, o, i.missing), "fp32 ONNX model not found"
    ),
    "quantize-corrupt": Case(
        QUANTIZE, lambda i, o: _quantize(i, o, i.corrupt_pt), "not a readable ONNX model"
    ),
    "make_synthetic-bad-count": Case(
        MAKE_SYNTHETIC,
        lambda i, o: ["--out", str(o / "s"), "--sequences", "0"],
        "need sequences >= 1",
    ),
    "train-missing-data": Case(
        TRAIN,
        lambda i, o: ["--preset", "tiny", "--data", str(i.missing), "--out", str(o / "run")],
        "no such folder",
    ),
    "train-corrupt-init": Case(
        TRAIN,
        lambda i, o: _train(i, o, "--init", str(i.corrupt_pt)),
        "not a readable vknet checkpoint",
    ),
    "train-wrong-preset": Case(
        TRAIN, lambda i, o: _train(i, o, preset="tiny_xl"), "--preset 'tiny_xl' is not a preset"
    ),
    "train-init-of-another-preset": Case(
        TRAIN,
        lambda i, o: _train(i, o, "--init", str(i.other_pt)),
        "holds preset 'tiny_vipseg', whose weights do not fit preset 'tiny'",
    ),
    "train-missing-resume": Case(
        TRAIN, lambda i, o: _train(i, o, "--resume", str(i.missing)), "--resume: no checkpoint"
    ),
    "evaluate-missing": Case(
        EVALUATE,
        lambda i, o: _model(i, o, i.missing) + ["--out", str(o / "m.json")],
        "no such file",
    ),
    "evaluate-corrupt": Case(
        EVALUATE,
        lambda i, o: _model(i, o, i.corrupt_pt) + ["--out", str(o / "m.json")],
        "not a readable vknet checkpoint",
    ),
    "evaluate-wrong-preset": Case(
        EVALUATE,
        lambda i, o: _model(i, o, i.other_pt) + ["--out", str(o / "m.json")],
        "the model (tiny_vipseg) is for vipseg",
    ),
    "evaluate-classes-of-another-dataset": Case(
        EVALUATE,
        lambda i, o: _model(i, o, i.other_pt) + ["--format", "kitti_step"],
        "the model predicts 124 classes",
    ),
    "evaluate-wrong-format": Case(
        EVALUATE,
        lambda i, o: ["--gt", str(i.data), "--pred", str(i.data), "--format", "kitti"],
        "invalid choice: 'kitti'",
    ),
    "validate-missing": Case(
        VALIDATE,
        lambda i, o: _model(i, o, i.missing) + ["--json", str(o / "s.json")],
        "checkpoint not found",
    ),
    "validate-corrupt": Case(
        VALIDATE,
        lambda i, o: _model(i, o, i.corrupt_pt) + ["--json", str(o / "s.json")],
        "not a readable vknet checkpoint",
    ),
    "validate-wrong-preset": Case(
        VALIDATE,
        lambda i, o: _model(i, o, i.other_pt) + ["--json", str(o / "s.json")],
        "the model (tiny_vipseg) is for vipseg",
    ),
    "plot_curves-missing": Case(
        PLOT, lambda i, o: [str(i.missing), "--out", str(o / "c.png")], "no such metrics file"
    ),
    "plot_curves-corrupt": Case(
        PLOT, lambda i, o: [str(i.corrupt_pt), "--out", str(o / "c.png")], "not a JSON line"
    ),
    "plot_curves-wrong-file": Case(
        PLOT,
        lambda i, o: [str(i.metrics_wrong), "--out", str(o / "c.png")],
        "expected a training metrics row",
    ),
    "summary-missing": Case(
        SUMMARY, lambda i, o: ["--checkpoint", str(i.missing)], "checkpoint not found"
    ),
    "summary-corrupt": Case(
        SUMMARY,
        lambda i, o: ["--checkpoint", str(i.corrupt_pt)],
        "not a readable vknet checkpoint",
    ),
    "summary-wrong-preset": Case(SUMMARY, lambda i, o: ["tiny_xl"], "invalid choice"),
    "summary-size-not-x32": Case(
        SUMMARY, lambda i, o: ["tiny", "--height", "100"], "multiples of 32, got 100x1248"
    ),
    "convert_official-missing": Case(
        CONVERT,
        lambda i, o: [
            "--preset",
            "kitti_step_r50",
            "--input",
            str(i.missing),
            "--output",
            str(o / "c.pt"),
        ],
        "official checkpoint not found",
    ),
    "convert_official-corrupt": Case(
        CONVERT,
        lambda i, o: [
            "--preset",
            "kitti_step_r50",
            "--input",
            str(i.corrupt_pt),
            "--output",
            str(o / "c.pt"),
        ],
        "not a readable PyTorch checkpoint",
    ),
    "convert_official-wrong-preset": Case(
        CONVERT,
        lambda i, o: [
            "--preset",
            "cityscapes_vps_r50",
            "--input",
            str(i.official_kitti),
            "--output",
            str(o / "c.pt"),
        ],
        "was trained on kitti_step",
    ),
    "convert_official-needs-pickle": Case(
        CONVERT,
        lambda i, o: [
            "--preset",
            "kitti_step_r50",
            "--input",
            str(i.official_pickled),
            "--output",
            str(o / "c.pt"),
        ],
        "rerun with --allow-pickle",
    ),
    "to_onnx-missing": Case(
        TO_ONNX,
        lambda i, o: [
            "--checkpoint",
            str(i.missing),
            "--height",
            "64",
            "--width",
            "96",
            "--output",
            str(o / "m.onnx"),
        ],
        "checkpoint not found",
    ),
    "to_onnx-corrupt": Case(
        TO_ONNX,
        lambda i, o: [
            "--checkpoint",
            str(i.corrupt_pt),
            "--height",
            "64",
            "--width",
            "96",
            "--output",
            str(o / "m.onnx"),
        ],
        "not a readable vknet checkpoint",
    ),
    "to_onnx-wrong-preset": Case(
        TO_ONNX,
        lambda i, o: [
            "--preset",
            "tiny_xl",
            "--height",
            "64",
            "--width",
            "96",
            "--output",
            str(o / "m.onnx"),
        ],
        "invalid choice",
    ),
}


def _main(spec: str) -> Callable[[list[str]], int]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def _call(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse exits instead of returning
        return int(e.code or 0)


@pytest.mark.parametrize("name", list(CASES))
def test_cli_fails_in_one_line_and_leaves_nothing(name, inputs, tmp_path, capsys):
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    before = _tree(inputs.root)
    rc = _call(_main(case.main), case.argv(inputs, out))
    err = capsys.readouterr().err
    assert rc == case.code, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert case.expect in err, err
    assert list(out.iterdir()) == []
    assert _tree(inputs.root) == before


def test_a_failed_resume_keeps_the_runs_config(inputs, tmp_path):
    from vknet_training.train import main

    run = tmp_path / "run"
    assert main(_train(inputs, tmp_path)) == 0
    config = (run / "train_config.json").read_bytes()
    files = _tree(run)
    state = run / "last.state.pt"
    state.write_bytes(state.read_bytes()[:1000])  # a truncated resume state
    files[state.name] = state.stat().st_mtime
    assert main(_train(inputs, tmp_path, "--resume", str(run), "--iters", "2")) == 2
    assert (run / "train_config.json").read_bytes() == config
    assert _tree(run) == files


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("VKNET_DEBUG", None)
    return env


@pytest.mark.parametrize(
    "launcher, name",
    [
        ("training/train.py", "train-init-of-another-preset"),
        ("export/convert_official.py", "convert_official-wrong-preset"),
    ],
)
def test_launcher_prints_one_line(launcher, name, inputs, tmp_path):
    """The documented command (a separate process: real stderr, logging and exit code)."""
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run(
        [sys.executable, str(REPO / launcher), *case.argv(inputs, out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == case.code, res.stderr
    assert res.stderr.count("\n") == 1 and case.expect in res.stderr, res.stderr
    assert list(out.iterdir()) == []


def test_debug_mode_shows_the_traceback(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("VKNET_DEBUG", "1")
    with pytest.raises(ValueError, match="not a readable vknet checkpoint"):
        _main(SUMMARY)(["--checkpoint", str(inputs.corrupt_pt)])
