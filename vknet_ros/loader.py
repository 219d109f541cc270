"""Build the framework-free pipeline the node runs, from ``NodeParams`` (no rclpy here).

The only place that knows how ``vknet_core`` (pipeline, visualize) and ``vknet_export``
(backends by name) fit together; the node only calls ``load_pipeline(params)``.
Errors say what was received and what was expected, in one line, so the node can log them as is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from vknet_core.types import PanopticFrame
from vknet_ros.params import NodeParams

log = logging.getLogger(__name__)


@dataclass
class LoadedPipeline:
    """What the node needs from a loaded model.

    pipeline: object with ``step(rgb uint8 [H,W,3]) -> PanopticFrame`` and ``reset()``
    overlay:  (rgb [H,W,3] uint8, frame) -> rgb [H,W,3] uint8 colour visualisation
    close:    frees the model / engine (GPU memory) — called on deactivate
    """

    pipeline: Any
    class_names: Sequence[str]
    thing_ids: Sequence[int]
    palette: Sequence[Sequence[int]]
    label_divisor: int
    ignore_label: int
    backend_name: str
    model_path: str
    device: str
    overlay: Callable[[np.ndarray, PanopticFrame], np.ndarray]
    close: Callable[[], None]


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable or does not fit the chosen backend."""


def _check_model_file(params: NodeParams) -> None:
    path = params.model_path
    if not path.is_file():
        hint = (
            " (the shipped tiny model is trained by training/train.py; set the 'model' "
            "parameter to a checkpoint)"
            if not params.model
            else ""
        )
        raise ModelLoadError(f"model file not found: {path}{hint}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file is empty: {path}")


def _core_configs(params: NodeParams) -> tuple[Any, Any]:
    from vknet_core.postprocess.panoptic import MergeConfig
    from vknet_core.tracking.tracker import TrackerConfig

    try:
        merge = dataclasses.replace(MergeConfig(), **dict(params.merge))
        tracker = dataclasses.replace(TrackerConfig(), **dict(params.tracker))
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"invalid merge/tracker parameters: {e}") from e
    return merge, tracker


def load_pipeline(params: NodeParams) -> LoadedPipeline:
    """NodeParams -> a ready ``VideoPanopticPipeline`` on the chosen backend.

    Raises ``ModelLoadError`` (missing, empty or corrupt model file; backend or device not
    available) with a one-line reason.
    """
    from vknet_core import visualize
    from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
    from vknet_core.preprocess import PreprocessConfig

    _check_model_file(params)
    merge, tracker = _core_configs(params)
    path = str(params.model_path)
    try:
        from vknet_export.backends import make_backend

        backend = make_backend(params.backend, path, device=params.device)
    except ModelLoadError:
        raise
    except Exception as e:  # corrupt file, wrong format, missing runtime, no CUDA, ...
        raise ModelLoadError(
            f"could not load {params.backend} model {path}: {type(e).__name__}: {e}"
        ) from e
    cfg = backend.cfg  # every Backend carries its model config (vknet_core.backend)
    labels = cfg.labels
    pipe_cfg = PipelineConfig(
        preprocess=PreprocessConfig(net_hw=params.network_hw, size_divisor=cfg.size_divisor),
        merge=merge,
        tracker=tracker,
    )
    pipeline = VideoPanopticPipeline(backend, cfg, pipe_cfg)
    palette = visualize.class_palette(labels.num_classes)  # [256, 3] uint8, 255 = void

    def overlay(rgb: np.ndarray, frame: PanopticFrame) -> np.ndarray:
        return visualize.overlay(rgb, frame, palette=palette)

    return LoadedPipeline(
        pipeline=pipeline,
        class_names=labels.class_names,
        thing_ids=labels.thing_train_ids,
        palette=[tuple(int(c) for c in palette[i]) for i in range(labels.num_classes)],
        label_divisor=pipeline.cfg.label_divisor,
        ignore_label=labels.ignore_label,
        backend_name=params.backend,
        model_path=path,
        device=params.device,
        overlay=overlay,
        close=pipeline.close,
    )


def warm_up(loaded: LoadedPipeline, params: NodeParams) -> Optional[str]:
    """Run one mid-grey frame at the network size through the pipeline, then reset it, so the
    first camera frame is not slow. Returns a log line, or None when the size follows the camera
    (or ``warmup`` is off). Exceptions of the backend propagate (activate fails on them)."""
    hw = params.network_hw
    if not params.warmup or hw is None:
        return None
    t0 = time.perf_counter()
    loaded.pipeline.step(np.full((hw[0], hw[1], 3), 128, np.uint8))
    loaded.pipeline.reset()
    return f"warm-up frame {hw[1]}x{hw[0]}: {(time.perf_counter() - t0) * 1e3:.0f} ms"
