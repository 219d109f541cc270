"""export/compare.py as a user runs it: a correct export passes, a broken one fails with a reason.

The shipped (trained) model at 128x256: a random model has arg-max near-ties that float noise
flips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import vknet_core
from vknet_export.agreement import TeacherForced
from vknet_export.compare import (
    EXIT_FAIL,
    EXIT_PASS,
    Comparison,
    compare_outputs,
    main,
    read_clip,
    synthetic_clip,
)

SHIPPED = Path(__file__).resolve().parents[2] / "vknet_ros" / "models" / "tiny_synthetic.pt"


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    from vknet_export.to_onnx import export_model

    path = tmp_path_factory.mktemp("compare") / "tiny.onnx"
    export_model(vknet_core.load_checkpoint(SHIPPED), path, 128, 256)
    return path


def _run(capsys, b: Path, *extra: str, a: Path = SHIPPED) -> tuple[int, str, str]:
    rc = main(["--a", f"torch:{a}", "--b", f"onnxruntime:{b}", "--frames", "4", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_correct_export_passes(shipped_onnx, capsys):
    rc, out, _ = _run(capsys, shipped_onnx)
    verdict = [line for line in out.splitlines() if line.startswith("VERDICT")]
    assert rc == EXIT_PASS and len(verdict) == 1, out
    assert verdict[0].startswith("VERDICT: PASS (4 frames; teacher-forced: ")
    assert "128x256" in out and "track ids agree on" in out


def test_cli_frames_from_folder(shipped_onnx, tmp_path, capsys):
    """Camera frames smaller than the network: padded, not resized."""
    import imageio.v3 as iio

    clip = tmp_path / "clip"
    clip.mkdir()
    for i, f in enumerate(synthetic_clip(100, 200, 2)):  # camera size != network size
        iio.imwrite(clip / f"{i:06d}.png", f)
    assert [f.shape for f in read_clip(clip, 5)] == [(100, 200, 3)] * 2
    rc, out, _ = _run(capsys, shipped_onnx, "--clip", str(clip))
    assert rc == EXIT_PASS, out


def _perturbed(src: Path, dst: Path) -> Path:
    """One weight changed: element [0, 0, 0, 0] of the first convolution += 0.5 max|w|."""
    m = onnx.load(src)
    inits = {i.name: i for i in m.graph.initializer}
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and n.input[1] in inits)
    w = numpy_helper.to_array(inits[conv.input[1]]).copy()
    w[0, 0, 0, 0] += 0.5 * np.abs(w).max()
    inits[conv.input[1]].CopyFrom(numpy_helper.from_array(w, conv.input[1]))
    onnx.save(m, dst)
    return dst


def _state_ignored(src: Path, dst: Path) -> Path:
    """The graph keeps its ``prev_kernels`` input but computes from zeros instead."""
    m = onnx.load(src)
    shape = [
        d.dim_value
        for d in next(
            i for i in m.graph.input if i.name == "prev_kernels"
        ).type.tensor_type.shape.dim
    ]
    zeros = numpy_helper.from_array(np.zeros(shape, np.float32), "prev_kernels_ignored")
    m.graph.initializer.append(zeros)
    for node in m.graph.node:
        for i, name in enumerate(node.input):
            if name == "prev_kernels":
                node.input[i] = "prev_kernels_ignored"
    onnx.save(m, dst)
    return dst


def test_perturbed_weight_fails(shipped_onnx, tmp_path, capsys):
    rc, out, _ = _run(capsys, _perturbed(shipped_onnx, tmp_path / "perturbed.onnx"))
    verdict = [line for line in out.splitlines() if line.startswith("VERDICT")]
    assert rc == EXIT_FAIL and len(verdict) == 1, out
    assert verdict[0].startswith("VERDICT: FAIL: frame 0: sem_logits differs by"), verdict
    assert "no near-zero flip explains it" in verdict[0]


def test_ignored_state_input_fails(shipped_onnx, tmp_path, capsys):
    rc, out, _ = _run(capsys, _state_ignored(shipped_onnx, tmp_path / "stateless.onnx"))
    verdict = [line for line in out.splitlines() if line.startswith("VERDICT")]
    assert rc == EXIT_FAIL, out
    assert (
        "3 of 3 linked frames (has_prev=1) exceed 0.001 (e.g. frame 1: track_embed" in verdict[0]
    ), verdict


def test_sporadic_flips_pass_and_systematic_differences_fail():
    """The rule itself: a hard-mask flip moves one frame; a wrong graph moves every frame."""
    clean = {
        "cls_prob": 2e-5,
        "mask_logits": 2e-5,
        "cur_kernels": 2e-5,
        "track_embed": 2e-5,
        "sem_logits": 3e-5,
    }
    flip = dict(clean, cur_kernels=1.2e-2, cls_prob=7.8e-3)  # frame 4 of the 384x1248 run
    ok = TeacherForced([clean, clean, flip, clean], [False, True, True, True])
    assert ok.failures() == []
    bad = TeacherForced([clean] + [flip] * 3, [False, True, True, True])
    assert bad.failures()[0].startswith("3 of 3 linked frames (has_prev=1) exceed")
    sem = TeacherForced([dict(clean, sem_logits=5e-3)] + [clean] * 3, [False, True, True, True])
    assert sem.failures()[0].startswith("frame 0: sem_logits differs")


def test_a_real_difference_is_reported(shipped_onnx):
    from vknet_export.ort_backend import OrtBackend

    class Perturbed:
        def __init__(self, be):
            self.be = be

        def step(self, feeds):
            out = self.be.step(feeds)
            return dict(out, cls_prob=out["cls_prob"] + 1e-3)

    frames = synthetic_clip(128, 256, 2)
    with OrtBackend(shipped_onnx) as be:
        res = compare_outputs(be, Perturbed(be), frames, 37, 64)
    assert isinstance(res, Comparison) and not res.ok
    assert np.isclose(res.max_abs["cls_prob"], 1e-3, rtol=1e-3)
    assert "cls_prob" in res.table() and "FAIL" in res.table()


def test_missing_model_is_one_line(shipped_onnx, capsys):
    rc, out, err = _run(capsys, Path("/does/not/exist.onnx"))
    assert rc == 2 and out == ""
    assert err.strip() == (
        "compare.py: error: --b: onnxruntime model file not found: /does/not/exist.onnx"
    )


def test_corrupt_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"not an onnx file")
    rc, _, err = _run(capsys, bad)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert (
        err.startswith("compare.py: error: --b: cannot load onnxruntime model")
        and "Traceback" not in err
    )


def test_preset_mismatch_is_one_line(shipped_onnx, tmp_path, capsys):
    import dataclasses

    from vknet_core.model.vknet import VideoKNet

    cfg = vknet_core.load_checkpoint(SHIPPED).cfg
    other = dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, num_thing_kernels=10))
    path = tmp_path / "other.pt"
    vknet_core.save_checkpoint(VideoKNet(other), path)
    rc, out, err = _run(capsys, shipped_onnx, a=path)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "compare needs two backends of the same model" in err and "differing: head" in err
