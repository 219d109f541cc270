"""int8: calibration with the state fed back, the QDQ file and its metadata, the backend path,
the accuracy report and its verdict (real ONNX Runtime sessions, tiny model, small frames)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.export.conftest import HEIGHT, WIDTH
from vknet_export.backends import make_backend
from vknet_export.compare import synthetic_clip
from vknet_export.ort_backend import OrtBackend
from vknet_export.quantize import (
    HEAD,
    META_QUANT,
    RECIPES,
    StateFeedbackReader,
    quantize_onnx,
    read_quantization,
)
from vknet_export.to_onnx import read_metadata
from vknet_training.make_synthetic import make_synthetic
from vknet_training.quantize import main as quantize_main


@pytest.fixture(scope="module")
def clips():
    clip = synthetic_clip(HEIGHT, WIDTH, 6)
    return [clip[:3], clip[3:]]


@pytest.fixture(scope="module")
def int8_onnx(tiny_onnx, clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    info = quantize_onnx(tiny_onnx, out, clips)
    assert (info.calibration_sequences, info.calibration_frames) == (2, 6)
    return out


def test_calibration_feeds_the_state_back(tiny_onnx, clips):
    reader = StateFeedbackReader(tiny_onnx, clips)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    feeds = []
    while (f := reader.get_next()) is not None:
        feeds.append(f)
    assert len(feeds) == 6 and (reader.sequences, reader.frames) == (2, 6)
    for i, f in enumerate(feeds):
        first = i % 3 == 0  # each clip starts from the zero state
        assert f["has_prev"][0] == (0.0 if first else 1.0)
        assert f["image"].shape == (1, HEIGHT, WIDTH, 3)
        if first:
            assert not f["prev_kernels"].any()
        else:
            prev = sess.run(["cur_kernels"], feeds[i - 1])[0]
            np.testing.assert_array_equal(f["prev_kernels"], prev)


def test_int8_graph_recipe_and_metadata(tiny_onnx, int8_onnx):
    proto = onnx.load(str(int8_onnx))
    cfg32, spec32 = read_metadata(tiny_onnx)
    cfg8, spec8 = read_metadata(int8_onnx)  # the vknet metadata travels
    assert cfg8 == cfg32 and spec8 == spec32
    meta = read_quantization(int8_onnx)
    assert meta["recipe"]["op_types"] == ["Conv"] and meta["recipe"]["per_channel"]
    assert meta["recipe"]["reduce_range"] and meta["calibration_frames"] == 6
    assert read_quantization(tiny_onnx) is None
    assert any(p.key == META_QUANT for p in proto.metadata_props)
    producers = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    quantized = {
        n.name: producers.get(n.input[1]) is not None
        and producers[n.input[1]].op_type == "DequantizeLinear"
        for n in convs
    }
    head = [k for k in quantized if k.startswith(HEAD)]
    assert head and not any(quantized[k] for k in head)  # the head stays fp32
    body = [k for k in quantized if k.startswith("/model/backbone/")]
    assert body and all(quantized[k] for k in body)
    # nothing but Conv is quantized: the MatMuls (mask pooling, dynamic conv, attention) and
    # Gemms take fp32 tensors, none comes out of a DequantizeLinear
    mm = [n for n in proto.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert mm and not any(
        producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
        for n in mm
        for i in n.input
    )


def test_int8_runs_through_the_ort_backend(tiny_onnx, int8_onnx, clips):
    be8 = make_backend("onnxruntime", int8_onnx, threads=1)
    be32 = OrtBackend(tiny_onnx)
    opts = be8._session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 1
    assert be8.cfg.name == "tiny"
    N, C = be8.cfg.num_kernels, be8.cfg.neck.channels
    state = {"prev_kernels": np.zeros((1, N, C), np.float32), "has_prev": np.zeros(1, np.float32)}
    try:
        for rgb in clips[0]:
            feeds = {"image": np.ascontiguousarray(rgb[None]), **state}
            out8, out32 = be8.step(feeds), be32.step(feeds)
            for k, a in out8.items():
                assert a.shape == out32[k].shape and a.dtype == np.float32
                assert np.isfinite(a).all()
            # int8 is close, not equal (random weights: a few classes move by up to ~0.2)
            assert np.abs(out8["cls_prob"] - out32["cls_prob"]).mean() < 0.03
            state = {"prev_kernels": out8["cur_kernels"], "has_prev": np.ones(1, np.float32)}
    finally:
        be8.close()
        be32.close()


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heldout")
    make_synthetic(root, sequences=1, frames=3, height=HEIGHT, width=WIDTH, seed=1, split="val")
    return root


def test_cli_report_with_labels(tiny_onnx, heldout, tmp_path, capsys):
    out = tmp_path / "m_int8.onnx"
    code = quantize_main(
        [
            "--onnx",
            str(tiny_onnx),
            "--output",
            str(out),
            "--calib-data",
            str(heldout),
            "--calib-split",
            "val",
            "--val-data",
            str(heldout),
            "--min-semantic-agreement",
            "0.5",
            "--max-stq-loss",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["accepted"] and report["labelled"] and report["frames"] == 3
    for m in ("STQ", "AQ", "SQ", "VPQ"):
        assert m in report["fp32"] and m in report["delta"]
    assert 0.5 <= report["semantic_agreement"] <= 1
    assert report["panoptic_agreement"] <= report["semantic_agreement"]
    assert "semantic agreement" in capsys.readouterr().out
    assert read_quantization(out)["calibration_frames"] == 3
    # training/evaluate.py --onnx takes the int8 file as it is
    from vknet_training.evaluate import evaluate_dataset

    scored = evaluate_dataset(heldout, "val", onnx=out, progress=False)
    assert scored["num_frames"] == 3
    assert scored["STQ"] == pytest.approx(report["int8"]["STQ"], abs=1e-9)


def test_cli_rejects_and_writes_no_model(tiny_onnx, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT))
    for i, rgb in enumerate(synthetic_clip(HEIGHT, WIDTH, 2)):
        cv2.imwrite(str(frames / f"{i:04d}.png"), rgb[:, :, ::-1])
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()
    out = tmp_path / "m_int8.onnx"
    code = quantize_main(
        [
            "--onnx",
            str(tiny_onnx),
            "--output",
            str(out),
            "--calib-video",
            str(video),
            "--val-images",
            str(frames),
            "--min-semantic-agreement",
            "1.01",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "rejected" in err and "semantic agreement" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.avi",
        "frames",
        "m_int8.report.json",
    ]
    report = json.loads((tmp_path / "m_int8.report.json").read_text())
    assert not report["accepted"] and not report["labelled"] and "delta" not in report
    assert report["calibration_frames"] == 2 and report["frames"] == 2


def test_cli_validates_sources(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert (
        quantize_main(
            ["--onnx", str(tiny_onnx), "--output", str(out), "--val-images", str(tmp_path)]
        )
        == 2
    )
    assert "exactly one of --calib-images" in capsys.readouterr().err
    assert not out.exists()


def test_recipes_are_named():
    assert RECIPES["conv"].exclude == HEAD and RECIPES["conv"].op_types == ("Conv",)
