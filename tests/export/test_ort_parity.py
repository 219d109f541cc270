"""Acceptance (issue 5): an 8-frame clip frame by frame through ONNX Runtime (CPU), cur_kernels fed
back as prev_kernels, matches PyTorch; the pipeline then gives identical panoptic maps and ids."""

from __future__ import annotations

from tests.export.conftest import HEIGHT, WIDTH
from vknet_core.pipeline import VideoPanopticPipeline
from vknet_core.runtime import TorchBackend
from vknet_export.compare import compare_backends, compare_outputs, synthetic_clip
from vknet_export.ort_backend import OrtBackend


def test_eight_frames_onnxruntime_matches_pytorch(tiny_model, tiny_onnx):
    frames = synthetic_clip(HEIGHT, WIDTH, 8)
    with TorchBackend(tiny_model) as ref, OrtBackend(tiny_onnx, "cpu") as ort_be:
        res = compare_backends(ref, ort_be, tiny_model.cfg, frames)
    print(res.table())
    assert res.frames == 8
    assert res.max_abs["cls_prob"] <= 1e-4
    for name in ("mask_logits", "track_embed", "cur_kernels", "sem_logits"):
        assert res.max_rel[name] <= 1e-3, (name, res.max_rel[name])
    assert res.panoptic_equal and res.track_ids_equal, res.table()


def test_pipeline_comparison_is_not_vacuous(tiny_model, tiny_onnx):
    """The clip produces thing segments with track ids that persist across frames."""
    frames = synthetic_clip(HEIGHT, WIDTH, 8)
    pipe = VideoPanopticPipeline(OrtBackend(tiny_onnx), tiny_model.cfg)
    ids = [
        {s.track_id for s in pipe.step(f).segments if s.is_thing and s.track_id} for f in frames
    ]
    assert sum(bool(i) for i in ids) >= 4, ids
    assert set.intersection(*[i for i in ids if i]), f"no id kept over frames: {ids}"


def test_state_feedback_matters(tiny_model, tiny_onnx):
    """Feeding the state back changes track_embed (linking), so the parity above tests it."""
    frames = synthetic_clip(HEIGHT, WIDTH, 2)

    class Stateless:
        def __init__(self, be):
            self.be = be

        def step(self, feeds):
            return self.be.step(
                dict(feeds, prev_kernels=0 * feeds["prev_kernels"], has_prev=0 * feeds["has_prev"])
            )

    with OrtBackend(tiny_onnx) as be:
        res = compare_outputs(be, Stateless(be), frames, 37, 64)
    assert res.max_abs["cls_prob"] == 0.0  # linking never changes classes (no fusion)
    assert res.max_rel["track_embed"] > 1e-2
