"""Framework-free online video panoptic segmentation: ``step(rgb_uint8) -> PanopticFrame``.

One object owns the per-sequence state (previous kernels, has_prev, frame index, tracker) and calls
any ``Backend`` (PyTorch now; ONNX Runtime / TensorRT from ``vknet_export``)::

    pipe = VideoPanopticPipeline.from_checkpoint("m.pt", device="cpu")
    for rgb in frames:                       # uint8 [H, W, 3] RGB
        frame = pipe.step(rgb)               # PanopticFrame at camera resolution
    pipe.reset()                             # new sequence

Flow (DESIGN §1): preprocess -> backend.step -> panoptic merge -> boxes + tracker -> maps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Optional, Union

import cv2
import numpy as np
import torch

from vknet_core.backend import Backend
from vknet_core.config import VKNetConfig
from vknet_core.io_spec import OUTPUT_NAMES, initial_state
from vknet_core.postprocess.boxes import segment_boxes, thing_segment_filter
from vknet_core.postprocess.panoptic import MergeConfig, panoptic_merge, semantic_lut
from vknet_core.preprocess import Letterbox, PreprocessConfig, native_hw, to_model_input
from vknet_core.runtime import TorchBackend
from vknet_core.tracking.id_pool import MAX_TRACK_ID
from vknet_core.tracking.tracker import QuasiDenseTracker, TrackerConfig
from vknet_core.types import PanopticFrame, Segment

log = logging.getLogger(__name__)

# Panoptic divisor of live outputs (PanopticFrame, the ROS topics, announced in ~/labels): track
# ids 1..65535 fit ~/instance_ids (16UC1), and 255 * 65536 + 65535 fits ~/panoptic (int32).
# Files in a dataset's format keep that dataset's divisor (KITTI-STEP: 1000, panoptic_io.py).
LIVE_LABEL_DIVISOR: int = 65536


@dataclass(frozen=True)
class PipelineConfig:
    """Everything after the network, plus the input geometry.

    device: where merge and boxes run ("cpu", "cuda", ...); None = the backend's ``device``
    (ONNX Runtime or TensorRT on CUDA -> merge on CUDA), CPU when torch has no CUDA.
    label_divisor: panoptic = semantic * label_divisor + track id; track ids are recycled within
    1 .. min(label_divisor - 1, 65535) (``vknet_core.tracking.id_pool``).
    bound_to_native: with ``preprocess.net_hw`` None and no ``preprocess.max_hw``, bound the
    network size by the preset's native size (``preprocess.native_hw``), aspect kept.
    merge_at_camera_size: for a frame the preprocessing scaled down, True merges with the masks
    rescaled to the camera size (the official ``rescale_masks`` path: memory and time grow with
    the camera's pixels, e.g. 4K); False (default) merges at the scaled size and enlarges the
    label maps with nearest neighbour to the camera size. Frames that are not scaled down (the
    official test sizes) give the same result either way.
    """

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    device: Optional[str] = None
    label_divisor: int = LIVE_LABEL_DIVISOR
    bound_to_native: bool = True
    merge_at_camera_size: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.label_divisor or 255 * self.label_divisor + self.max_track_id >= 2**31:
            raise ValueError(
                f"label_divisor must be >= 2 and keep 255 * divisor + id within "
                f"int32, got {self.label_divisor}"
            )

    @property
    def max_track_id(self) -> int:
        return min(self.label_divisor - 1, MAX_TRACK_ID)


class VideoPanopticPipeline:
    """Stateful per-frame runner. ``model_cfg`` (default: ``backend.cfg``) gives labels, kernel
    counts and strides."""

    def __init__(
        self,
        backend: Backend,
        model_cfg: Optional[VKNetConfig] = None,
        cfg: PipelineConfig = PipelineConfig(),
    ):
        if not isinstance(backend, Backend):
            missing = [
                a
                for a in ("step", "close", "device", "spec", "cfg", "name")
                if not hasattr(backend, a)
            ]
            raise TypeError(
                f"backend must implement vknet_core.backend.Backend; "
                f"{type(backend).__name__} lacks {missing}"
            )
        model_cfg = backend.cfg if model_cfg is None else model_cfg
        if backend.spec.num_kernels != model_cfg.num_kernels:
            raise ValueError(
                f"backend {backend.name} runs {backend.spec.num_kernels} kernels, "
                f"model config {model_cfg.name!r} has {model_cfg.num_kernels}"
            )
        self.backend = backend
        self.model_cfg = model_cfg
        self.cfg = cfg
        self.device = _merge_device(cfg.device, backend.device)
        pre = cfg.preprocess
        spec = backend.spec  # exported graphs with a fixed input size set the network size
        if pre.net_hw is None and not spec.dynamic:
            pre = PreprocessConfig(
                net_hw=(int(spec.height), int(spec.width)),
                size_divisor=pre.size_divisor,
                pad_value=pre.pad_value,
            )
        if pre.net_hw is None and pre.max_hw is None and cfg.bound_to_native:
            pre = dataclasses.replace(pre, max_hw=native_hw(model_cfg.name))
        self.preprocess_cfg = pre
        self.tracker = QuasiDenseTracker(cfg.tracker, max_track_id=cfg.max_track_id)
        self.last_timings: dict[str, float] = {}
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Start a new sequence: zero kernels, has_prev = 0, fresh tracker (id pool refilled)."""
        state = initial_state(self.backend.spec)
        self._prev_kernels, self._has_prev = state["prev_kernels"], state["has_prev"]
        self.frame_index = 0
        self.tracker.reset()

    def close(self) -> None:
        self.backend.close()

    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, os.PathLike],
        device: str = "cpu",
        cfg: PipelineConfig = PipelineConfig(),
    ) -> VideoPanopticPipeline:
        """Checkpoint -> TorchBackend on ``device`` -> pipeline."""
        from vknet_core.checkpoint import load_checkpoint

        model = load_checkpoint(path)
        return cls(TorchBackend(model, device), model.cfg, cfg)

    # ------------------------------------------------------------------ step

    def step(self, rgb: np.ndarray) -> PanopticFrame:
        """One camera frame (uint8 [H, W, 3] RGB) -> PanopticFrame at [H, W]."""
        t0 = time.perf_counter()
        image, letterbox = to_model_input(rgb, self.preprocess_cfg)
        t1 = time.perf_counter()
        out = self.backend.step(
            {"image": image, "prev_kernels": self._prev_kernels, "has_prev": self._has_prev}
        )
        self._check_outputs(out)
        t2 = time.perf_counter()
        self._prev_kernels = np.ascontiguousarray(out["cur_kernels"], np.float32)
        self._has_prev = np.ones((1,), np.float32)

        mc, lab = self.cfg.merge, self.model_cfg.labels
        camera_hw = letterbox.orig_hw
        if not self.cfg.merge_at_camera_size and letterbox.resized_hw != camera_hw:
            letterbox = Letterbox(letterbox.resized_hw, letterbox.resized_hw, letterbox.pad_hw)
        Q, T = self.model_cfg.head.num_thing_kernels, lab.num_things
        dev = self.device
        result = panoptic_merge(
            torch.from_numpy(out["cls_prob"][0]).to(dev),
            torch.from_numpy(out["mask_logits"][0]).to(dev),
            letterbox,
            Q,
            T,
            mc,
            upsample=self.model_cfg.head.mask_upsample_stride,
        )
        sem_lut = semantic_lut(result, lab.model_to_train_id, lab.ignore_label, mc.void_as_road)
        things = result.thing_segments  # [n] positions in segment order
        boxes = None
        if things.numel():
            keep = None
            if mc.semantic_filter:  # wanted only on the thing segments: decided there
                keep = thing_segment_filter(
                    result,
                    torch.from_numpy(out["sem_logits"][0]).to(dev),
                    T,
                    letterbox if mc.semantic_filter_crop else None,
                    letterbox.orig_hw,
                )
            boxes = segment_boxes(result.segment_map, things + 1, keep)
        segment_map = result.segment_map.cpu().numpy()
        sem_lut_np = sem_lut.cpu().numpy().astype(np.uint8)  # [S + 1] train id per segment id
        areas = result.areas.tolist()
        if segment_map.shape != camera_hw:  # merged at the scaled size: label maps up, nearest
            size = (camera_hw[1], camera_hw[0])
            segment_map = cv2.resize(
                segment_map.astype(np.int32), size, interpolation=cv2.INTER_NEAREST
            )
            areas = np.bincount(segment_map.ravel(), minlength=result.num_segments + 1)[1:]
            areas = areas.tolist()
        semantic_np = np.take(sem_lut_np, segment_map)
        t3 = time.perf_counter()

        track_ids = np.zeros(result.num_segments, np.int64)
        th = things.cpu().numpy()
        E = out["track_embed"].shape[-1]
        res = self.tracker.update(
            boxes.cpu().numpy() if boxes is not None else np.zeros((0, 4), np.float32),
            result.scores[things].cpu().numpy(),
            result.labels[things].cpu().numpy(),
            out["track_embed"][0][result.kernels[things].cpu().numpy()].reshape(-1, E),
            frame_id=self.frame_index,
        )  # called on empty frames too: stale tracks expire
        track_ids[th] = res.track_ids(self.cfg.tracker.official_paint_order)
        self.frame_index += 1
        lut = np.concatenate([[0], track_ids]).astype(np.uint16)
        instance_ids = np.take(lut, segment_map)
        div = self.cfg.label_divisor
        # per segment id, then one lookup per pixel (the same values as the per-pixel formula)
        panoptic = np.take(sem_lut_np.astype(np.int32) * div + lut.astype(np.int32), segment_map)
        segments = [
            Segment(
                id=i + 1,
                train_id=int(lab.model_to_train_id[int(label)]),
                is_thing=bool(is_thing),
                score=float(score),
                kernel_index=int(kernel),
                area=int(area),
                track_id=int(track_ids[i]),
            )
            for i, (label, is_thing, score, kernel, area) in enumerate(
                zip(
                    result.labels.tolist(),
                    result.is_thing.tolist(),
                    result.scores.tolist(),
                    result.kernels.tolist(),
                    areas,
                )
            )
        ]
        t4 = time.perf_counter()
        self.last_timings = {
            "preprocess": t1 - t0,
            "network": t2 - t1,
            "merge": t3 - t2,
            "tracker": t4 - t3,
            "total": t4 - t0,
        }
        return PanopticFrame(
            segment_map=segment_map,
            semantic=semantic_np,
            instance_ids=instance_ids,
            panoptic=panoptic,
            segments=segments,
            label_divisor=div,
        )

    def _check_outputs(self, out: dict[str, np.ndarray]) -> None:
        missing = [n for n in OUTPUT_NAMES if n not in out]
        if missing:
            raise ValueError(f"backend returned {sorted(out)}, missing {missing}")
        N, K = self.model_cfg.num_kernels, self.model_cfg.labels.num_classes
        Q, C = self.model_cfg.head.num_thing_kernels, self.model_cfg.neck.channels
        expect = {"cls_prob": (1, N, K), "cur_kernels": (1, N, C)}
        for name, shape in expect.items():
            if tuple(out[name].shape) != shape:
                raise ValueError(
                    f"backend output {name} has shape {out[name].shape}, expected "
                    f"{shape} for model {self.model_cfg.name!r}"
                )
        if out["track_embed"].shape[:2] != (1, Q) or out["mask_logits"].shape[:2] != (1, N):
            raise ValueError(
                f"backend outputs track_embed {out['track_embed'].shape} / "
                f"mask_logits {out['mask_logits'].shape} do not fit Q={Q}, N={N}"
            )


def _merge_device(requested: Optional[str], network: torch.device) -> torch.device:
    """Where merge and boxes run: as requested, else beside the network's outputs (CPU when
    torch itself has no CUDA, e.g. onnxruntime-gpu next to a CPU-only torch)."""
    if requested is not None:
        return torch.device(requested)
    if network.type == "cuda" and not torch.cuda.is_available():
        log.warning("network runs on %s but torch has no CUDA: merging on cpu", network)
        return torch.device("cpu")
    return network
