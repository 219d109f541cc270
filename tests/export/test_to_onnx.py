"""export/to_onnx.py: what a user runs. Atomic output, metadata, CLI, dynamic H/W."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.export.conftest import HEIGHT, WIDTH
from vknet_core.io_spec import INPUT_NAMES, OUTPUT_NAMES, dummy_inputs
from vknet_core.model.vknet import FrameStep
from vknet_export import to_onnx
from vknet_export.to_onnx import export_model, main, read_metadata


def test_metadata_round_trip(tiny_onnx, tiny_model):
    cfg, spec = read_metadata(tiny_onnx)
    assert cfg == tiny_model.cfg
    assert (spec.height, spec.width, spec.dynamic) == (HEIGHT, WIDTH, False)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    got = {i.name: (i.shape, i.type) for i in sess.get_inputs()}
    assert got == {
        "image": ([1, HEIGHT, WIDTH, 3], "tensor(uint8)"),
        "prev_kernels": ([1, 37, 64], "tensor(float)"),
        "has_prev": ([1], "tensor(float)"),
    }
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)


def test_failed_export_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("ORT and PyTorch disagree (simulated)")

    monkeypatch.setattr(to_onnx, "smoke_run", broken)
    out = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError, match="simulated"):
        export_model(tiny_model, out, 64, 96)
    assert list(tmp_path.iterdir()) == []


def test_cli_from_checkpoint(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    rc = main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--height",
            "64",
            "--width",
            "96",
            "--output",
            str(out),
        ]
    )
    assert rc == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "ORT vs PyTorch max abs diff: cls_prob" in text
    assert "('image', [1, 64, 96, 3], 'uint8')" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = main(
        [
            "--checkpoint",
            str(tmp_path / "missing.pt"),
            "--height",
            "64",
            "--width",
            "96",
            "--output",
            str(tmp_path / "m.onnx"),
        ]
    )
    assert rc == 2 and not (tmp_path / "m.onnx").exists()  # a user error: exit 2
    rc = main(
        [
            "--preset",
            "tiny",
            "--height",
            "60",
            "--width",
            "96",
            "--output",
            str(tmp_path / "m.onnx"),
        ]
    )
    assert rc == 2 and not (tmp_path / "m.onnx").exists()
    assert capsys.readouterr().err.count("\n") == 2  # one line per failure


def test_read_metadata_rejects_foreign_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(g), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="no vknet metadata"):
        read_metadata(tmp_path / "foreign.onnx")


@torch.no_grad()
def test_dynamic_export_runs_at_other_sizes(tiny_model, tiny_onnx_dynamic):
    out = tiny_onnx_dynamic
    _, spec = read_metadata(out)
    assert spec.dynamic
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    step = FrameStep(tiny_model).eval()
    for h, w in ((96, 160), (64, 64)):
        feeds = dummy_inputs(spec.concrete(h, w), seed=5, has_prev=True)
        got = sess.run(None, feeds)
        ref = step(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
        for name, g, r in zip(OUTPUT_NAMES, got, ref):
            assert g.shape == tuple(r.shape), name
            r = r.numpy()
            np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-3 * np.abs(r).max(), err_msg=name)
