"""VideoPanopticPipeline: state handling, maps, track ids, and the real tiny model behind it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vknet_core
from vknet_core.backend import Backend
from vknet_core.config import tiny
from vknet_core.io_spec import INPUT_NAMES, OUTPUT_NAMES, io_spec
from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.runtime import TorchBackend

CFG = tiny()
Q, K, T = CFG.head.num_thing_kernels, CFG.labels.num_classes, CFG.labels.num_things
N, C, E = CFG.num_kernels, CFG.neck.channels, CFG.video.embed_channels
ROAD_KERNEL = Q  # stuff kernel 0 = model label T = train id 0 (road)


class ScriptedBackend:
    """Implements the Backend protocol with hand-made outputs: two people crossing, drawn by
    kernels that swap every frame (ids must follow the embeddings, not the kernels)."""

    name = "scripted"
    device = torch.device("cpu")
    cfg = CFG
    spec = io_spec(CFG, dynamic=True)

    def __init__(self):
        self.feeds: list[dict[str, np.ndarray]] = []
        self.t = 0
        self.closed = False
        rng = np.random.default_rng(0)
        self.emb = 4.0 * np.linalg.qr(rng.normal(size=(E, 2)))[0].T  # A, B orthogonal

    def rects(self, t):  # stride-8 cells (y0, y1, x0, x1) of A and B on a 16 x 24 map
        # they pass each other in neighbouring lanes (x ranges cross at t = 4)
        return {"A": (2, 7, 2 + 2 * t, 6 + 2 * t), "B": (8, 14, 18 - 2 * t, 22 - 2 * t)}

    def step(self, feeds):
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        H, W = feeds["image"].shape[1:3]
        h, w = H // 8, W // 8
        t = self.t
        self.t += 1
        kernel = {"A": 0, "B": 1} if t % 2 == 0 else {"A": 5, "B": 3}
        cls_prob = np.full((1, N, K), 0.01, np.float32)
        mask_logits = np.full((1, N, h, w), -10.0, np.float32)
        sem = np.zeros((1, K, h, w), np.float32)
        sem[0, T] = 5.0  # road everywhere ...
        embed = np.zeros((1, Q, E), np.float32)
        cls_prob[0, ROAD_KERNEL, T] = 0.7
        mask_logits[0, ROAD_KERNEL] = 5.0
        for name, score in (("A", 0.9), ("B", 0.8)):
            k = kernel[name]
            y0, y1, x0, x1 = self.rects(t)[name]
            cls_prob[0, k, 0] = score  # person
            mask_logits[0, k, y0:y1, x0:x1] = 10.0
            sem[0, 0, y0:y1, x0:x1] = 9.0  # ... except the people
            embed[0, k] = self.emb["AB".index(name)]
        cur = feeds["prev_kernels"] + 1.0
        return {
            "cls_prob": cls_prob,
            "mask_logits": mask_logits,
            "cur_kernels": cur,
            "track_embed": embed,
            "sem_logits": sem,
        }

    def close(self):
        self.closed = True


def scripted_pipeline():
    return VideoPanopticPipeline(ScriptedBackend(), CFG, PipelineConfig())


def center_pixel(rect):  # camera = network size here (120x180 padded to 128x192)
    y0, y1, x0, x1 = rect
    return (y0 + y1) * 4, (x0 + x1) * 4


def test_scripted_sequence_ids_follow_objects_and_state_round_trips():
    pipe = scripted_pipeline()
    be = pipe.backend
    rgb = np.zeros((120, 180, 3), np.uint8)
    ids = {"A": set(), "B": set()}
    for t in range(6):
        frame = pipe.step(rgb)
        assert frame.semantic.shape == (120, 180) and frame.semantic.dtype == np.uint8
        assert frame.instance_ids.dtype == np.uint16 and frame.panoptic.dtype == np.int32
        for name, rect in be.rects(t).items():
            y, x = center_pixel(rect)
            assert frame.semantic[y, x] == 11  # person train id
            ids[name].add(int(frame.instance_ids[y, x]))
        assert frame.semantic[2, 2] == 0 and frame.instance_ids[2, 2] == 0  # road, stuff
        np.testing.assert_array_equal(
            frame.panoptic,
            frame.semantic.astype(np.int32) * frame.label_divisor + frame.instance_ids,
        )
        things = [s for s in frame.segments if s.is_thing]
        assert sorted(s.track_id for s in things) == [1, 2]
        for s in frame.segments:
            assert (frame.segment_map == s.id).sum() == s.area
            assert (frame.instance_ids[frame.segment_map == s.id] == s.track_id).all()
    assert ids == {"A": {1}, "B": {2}}
    assert [f["has_prev"][0] for f in be.feeds] == [0, 1, 1, 1, 1, 1]
    assert [f["prev_kernels"].max() for f in be.feeds] == [0, 1, 2, 3, 4, 5]
    assert set(be.feeds[0]) == set(INPUT_NAMES)
    assert be.feeds[0]["image"].shape == (1, 128, 192, 3)

    pipe.reset()
    be.t = 0
    again = pipe.step(rgb)
    assert be.feeds[-1]["has_prev"][0] == 0 and be.feeds[-1]["prev_kernels"].max() == 0
    y, x = center_pixel(be.rects(0)["A"])
    assert again.instance_ids[y, x] == 1  # ids restart after reset
    assert set(pipe.last_timings) == {"preprocess", "network", "merge", "tracker", "total"}
    pipe.close()
    assert be.closed


def test_void_pixels_and_void_as_road_option():
    pipe = scripted_pipeline()
    pipe.backend.step_orig = pipe.backend.step

    def no_road(feeds):
        out = pipe.backend.step_orig(feeds)
        out["cls_prob"][0, 10, 0] = 0.24  # a thing below instance_score_thr wins the left
        out["mask_logits"][0, 10, :, :3] = 10.0  # columns: skipped, its pixels stay void
        out["cls_prob"][0, ROAD_KERNEL, T] = 0.2
        return out

    pipe.backend.step = no_road
    frame = pipe.step(np.zeros((120, 180, 3), np.uint8))
    void = frame.segment_map == 0
    assert void.any()
    assert (frame.semantic[void] == 255).all()
    assert (frame.panoptic[void] == 255 * frame.label_divisor).all()
    road = VideoPanopticPipeline(
        pipe.backend,
        CFG,
        PipelineConfig(merge=vknet_core.postprocess.panoptic.MergeConfig(void_as_road=True)),
    )
    pipe.backend.t = 0
    assert (road.step(np.zeros((120, 180, 3), np.uint8)).semantic[void] == 0).all()


def test_bad_frames_and_bad_backends_raise():
    pipe = scripted_pipeline()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        pipe.step(np.zeros((120, 180), np.uint8))

    class Wrong(ScriptedBackend):
        def step(self, feeds):
            out = super().step(feeds)
            out["cls_prob"] = out["cls_prob"][:, :10]
            return out

    with pytest.raises(ValueError, match="cls_prob"):
        VideoPanopticPipeline(Wrong(), CFG).step(np.zeros((120, 180, 3), np.uint8))
    with pytest.raises(TypeError, match=r"Backend; object lacks \['step', 'close', 'device'"):
        VideoPanopticPipeline(object(), CFG)

    class StepOnly:  # the old duck-typed interface is no longer enough
        def step(self, feeds):
            return {}

        def close(self):
            pass

    with pytest.raises(TypeError, match=r"StepOnly lacks \['device', 'spec', 'cfg', 'name'\]"):
        VideoPanopticPipeline(StepOnly(), CFG)


def test_merge_runs_on_the_backend_device_and_config_comes_from_it(monkeypatch):
    class OnCuda(ScriptedBackend):
        device = torch.device("cuda", 1)

    pipe = VideoPanopticPipeline(OnCuda())  # model config from backend.cfg
    assert pipe.model_cfg is CFG
    if torch.cuda.is_available():
        assert pipe.device == torch.device("cuda", 1)
    else:  # onnxruntime-gpu beside a CPU-only torch: merge falls back to the CPU
        assert pipe.device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert VideoPanopticPipeline(OnCuda()).device == torch.device("cuda", 1)
    explicit = VideoPanopticPipeline(OnCuda(), cfg=PipelineConfig(device="cpu"))
    assert explicit.device == torch.device("cpu")
    with pytest.raises(ValueError, match="runs 37 kernels, model config 'kitti_step_r50' has"):
        VideoPanopticPipeline(ScriptedBackend(), vknet_core.get_preset("kitti_step_r50"))


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    vknet_core.save_checkpoint(model, path)
    return path


def test_torch_backend_matches_frame_step(tiny_ckpt):
    from vknet_core.model.vknet import FrameStep

    model = vknet_core.load_checkpoint(tiny_ckpt)
    be = TorchBackend(model, "cpu")
    assert isinstance(be, Backend)
    rng = np.random.default_rng(1)
    prev, has = model.initial_state(1)
    feeds = {
        "image": rng.integers(0, 255, (1, 64, 96, 3), dtype=np.uint8),
        "prev_kernels": prev.numpy(),
        "has_prev": has.numpy(),
    }
    out = be.step(feeds)
    assert tuple(out) == OUTPUT_NAMES
    with torch.no_grad():
        ref = FrameStep(model)(torch.from_numpy(feeds["image"]), prev, has)
    for name in OUTPUT_NAMES:  # the backend folds BatchNorm: fp32 rounding, not equality
        np.testing.assert_allclose(out[name], getattr(ref, name).numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prev_kernels"):
        be.step({**feeds, "prev_kernels": feeds["prev_kernels"].astype(np.float64)})
    with pytest.raises(ValueError, match="feeds must be exactly"):
        be.step({"image": feeds["image"]})
    be.close()
    with pytest.raises(RuntimeError, match="closed"):
        be.step(feeds)


def test_pipeline_from_checkpoint_runs_and_reset_restores_frame_zero(tiny_ckpt):
    pipe = VideoPanopticPipeline.from_checkpoint(tiny_ckpt, device="cpu")
    rng = np.random.default_rng(2)
    clip = [rng.integers(0, 255, (50, 70, 3), dtype=np.uint8) for _ in range(3)]
    first = [pipe.step(rgb) for rgb in clip]
    for f in first:
        assert f.semantic.shape == (50, 70)
        np.testing.assert_array_equal(f.panoptic // f.label_divisor, f.semantic)
        assert set(np.unique(f.semantic)) <= set(range(19)) | {255}
        assert sum(s.area for s in f.segments) == int((f.segment_map > 0).sum())
    pipe.reset()
    again = pipe.step(clip[0])
    np.testing.assert_array_equal(again.segment_map, first[0].segment_map)
    np.testing.assert_array_equal(again.panoptic, first[0].panoptic)
    pipe.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pipeline_matches_cpu(tiny_ckpt):
    rng = np.random.default_rng(3)
    clip = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    cpu = VideoPanopticPipeline.from_checkpoint(tiny_ckpt, device="cpu")
    gpu = VideoPanopticPipeline.from_checkpoint(tiny_ckpt, device="cuda")
    assert gpu.device.type == "cuda"
    for rgb in clip:
        a, b = cpu.step(rgb), gpu.step(rgb)
        assert (a.segment_map != b.segment_map).mean() < 1e-3


def test_overlay_colours_are_stable_per_track_id():
    from vknet_core.visualize import class_palette, overlay, track_colors

    pipe = scripted_pipeline()
    be = pipe.backend
    rgb = np.zeros((120, 180, 3), np.uint8)
    seen = {}
    for t in range(3):
        frame = pipe.step(rgb)
        vis = overlay(rgb, frame, alpha=1.0, draw_boundaries=False)
        assert vis.shape == (120, 180, 3) and vis.dtype == np.uint8
        for name, rect in be.rects(t).items():
            y, x = center_pixel(rect)
            seen.setdefault(name, set()).add(tuple(vis[y, x]))
        assert tuple(vis[2, 2]) == tuple(class_palette(19)[0])  # road colour
    assert all(len(c) == 1 for c in seen.values()) and seen["A"] != seen["B"]
    assert tuple(track_colors([1])[0]) in seen["A"]
    with pytest.raises(ValueError, match="matching the frame"):
        overlay(np.zeros((10, 10, 3), np.uint8), frame)
