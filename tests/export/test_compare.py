"""export/compare.py as a user runs it: checkpoint vs its ONNX, one command."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import vknet_core

from vknet_export.compare import Comparison, compare_outputs, main, read_clip, synthetic_clip


def test_cli_torch_vs_onnxruntime(tiny_checkpoint, tiny_onnx, capsys):
    rc = main(["--a", f"torch:{tiny_checkpoint}", "--b", f"onnxruntime:{tiny_onnx}",
               "--frames", "3"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "128x256" in text and "cls_prob" in text
    assert "panoptic maps identical: yes; track ids identical: yes (3 frames)" in text


def test_cli_frames_from_folder(tmp_path, capsys):
    """The shipped (trained) model on a folder of frames smaller than the network: padded, not
    resized. A trained model, because a random one has arg-max near-ties that float noise flips."""
    import imageio.v3 as iio

    from vknet_export.to_onnx import export_model

    shipped = Path(__file__).resolve().parents[2] / "vknet_ros" / "models" / "tiny_synthetic.pt"
    export_model(vknet_core.load_checkpoint(shipped), tmp_path / "tiny.onnx", 128, 256)
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, f in enumerate(synthetic_clip(100, 200, 2)):  # camera size != network size
        iio.imwrite(clip / f"{i:06d}.png", f)
    assert [f.shape for f in read_clip(clip, 5)] == [(100, 200, 3)] * 2
    rc = main(["--a", f"torch:{shipped}", "--b", f"onnxruntime:{tmp_path / 'tiny.onnx'}",
               "--clip", str(clip)])
    assert rc == 0, capsys.readouterr().out


def test_a_real_difference_is_reported(tiny_onnx, capsys):
    from vknet_export.ort_backend import OrtBackend

    class Perturbed:
        def __init__(self, be):
            self.be = be

        def step(self, feeds):
            out = self.be.step(feeds)
            return dict(out, cls_prob=out["cls_prob"] + 1e-3)

    frames = synthetic_clip(128, 256, 2)
    with OrtBackend(tiny_onnx) as be:
        res = compare_outputs(be, Perturbed(be), frames, 37, 64)
    assert isinstance(res, Comparison) and not res.ok
    assert np.isclose(res.max_abs["cls_prob"], 1e-3, rtol=1e-3)
    assert "cls_prob" in res.table() and "FAIL" in res.table()


def test_cli_bad_backend_spec_exits_nonzero(tiny_onnx, capsys):
    rc = main(["--a", f"onnxruntime:{tiny_onnx}", "--b", "onnxruntime:/does/not/exist.onnx"])
    assert rc == 1
