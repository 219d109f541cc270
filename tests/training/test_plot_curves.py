"""Training curves: the colours written are the colours named, and the iteration axis holds
with a single validation point (the PNG is read back and its pixels checked)."""

import json

import cv2
import numpy as np
import pytest

from vknet_training.plot_curves import COLOURS, PANEL_H, PANEL_W, main, nice_ticks, plot_curves


def _write(path, steps, val_steps):
    rows = [
        {"kind": "train", "step": s, "loss": 5.0 / s, "lr": 1e-4, "loss_rpn_seg": 1.0 / s}
        for s in steps
    ]
    rows += [
        {"kind": "val", "step": s, "STQ": 0.5, "AQ": 0.4, "SQ": 0.7, "VPQ": 0.6} for s in val_steps
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rgb_pixels(img_bgr, region):
    y0, y1, x0, x1 = region
    px = img_bgr[y0:y1, x0:x1].reshape(-1, 3)[:, ::-1]  # -> RGB
    return {tuple(int(v) for v in p) for p in px}


def test_colours_are_the_named_ones_and_one_validation_point_sits_at_its_step(tmp_path):
    metrics = _write(tmp_path / "metrics.jsonl", range(1, 101), [100])
    out = plot_curves(metrics, tmp_path / "curves.png")
    img = cv2.imread(str(out))  # BGR on disk, as every PNG reader expects RGB after decoding
    assert img.shape == (2 * PANEL_H, 2 * PANEL_W, 3)
    # the first series of every panel is COLOURS[0] (blue), the second COLOURS[1] (orange)
    total_loss = _rgb_pixels(img, (0, PANEL_H, 0, PANEL_W))
    assert COLOURS[0] in total_loss and COLOURS[1] in total_loss
    assert COLOURS[0][::-1] not in total_loss  # the swapped colour is not drawn
    # validation panel (bottom right): its only point is drawn at the right end of the axis,
    # in the same column as the last training step of the panel above it
    stq = _columns(img[PANEL_H:, PANEL_W:], COLOURS[0])
    lr_line = _columns(img[PANEL_H:, :PANEL_W], COLOURS[0])
    assert len(stq) and len(lr_line)
    assert abs(stq.mean() - lr_line.max()) <= 4, (stq, lr_line.max())


def _columns(panel_bgr, rgb, below=60, tol=60):
    """Columns of the pixels near colour ``rgb`` under the legend rows."""
    diff = np.abs(panel_bgr[below:, :, ::-1].astype(int) - np.array(rgb)).sum(-1)
    return np.argwhere(diff < tol)[:, 1]


def test_ticks_are_whole_round_iterations():
    assert nice_ticks(0, 206) == [0, 50, 100, 150, 200]
    assert nice_ticks(0, 2.06) == [0, 1, 2]  # never 0.5 iterations
    assert nice_ticks(0, 20600) == [0, 5000, 10000, 15000, 20000]


def test_one_step_run_plots(tmp_path, capsys):
    metrics = _write(tmp_path / "metrics.jsonl", [1], [1])
    assert main([str(metrics)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_no_training_rows_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no training rows"):
        plot_curves(_write(tmp_path / "m.jsonl", [], [5]), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
