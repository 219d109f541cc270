"""The embedded demo end to end (small): camera -> vknet_node -> recorder over DDS, files out."""

from __future__ import annotations

import json

from tests.ros.conftest import rclpy  # noqa: F401  (sets the isolated domain; skips without rclpy)
from vknet_ros.demo import main, run_demo


def test_demo_writes_gif_pngs_and_summary(tmp_path, tiny_checkpoint):
    r = run_demo(tmp_path, tiny_checkpoint, frames=6, rate=5.0, height=96, width=192)
    assert 1 <= r.frames_segmented <= 6 and r.latency_mean_ms > 0
    assert (tmp_path / "overlay.gif").stat().st_size > 0
    assert len(list((tmp_path / "panoptic").glob("*.png"))) == r.frames_segmented
    assert json.loads((tmp_path / "summary.json").read_text())["frames_published"] == 6


def test_demo_without_model_says_so(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--model", str(tmp_path / "none.pt")]) == 2
    assert "model file not found" in capsys.readouterr().out
