"""The PyTorch backend: one per-frame step, numpy in and out (the ``vknet_core.backend`` protocol).

Feeds and outputs are those of ``vknet_core.io_spec`` (DESIGN §3.2): ``image`` uint8 [1,H,W,3]
RGB, ``prev_kernels`` float32 [1,N,C], ``has_prev`` float32 [1] in; ``cls_prob`` [1,N,K],
``mask_logits`` [1,N,h,w], ``cur_kernels`` [1,N,C], ``track_embed`` [1,Q,E], ``sem_logits``
[1,K,h,w] out. ONNX Runtime and TensorRT backends live in ``vknet_export`` and implement the same
protocol, so ``VideoPanopticPipeline`` takes any of them.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Union

import numpy as np
import torch

from vknet_core.backend import network_device
from vknet_core.io_spec import INPUT_NAMES, OUTPUT_NAMES, check_feeds, io_spec

log = logging.getLogger(__name__)


class TorchBackend:
    """Runs ``FrameStep(model)`` (uint8 in, normalisation inside) with PyTorch.

    model: a ``VideoKNet``; device: "cpu", "cuda", "cuda:1", ... TF32 is switched off on CUDA so
    results stay within the parity tolerances.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: Union[str, torch.device] = "cpu"):
        from vknet_core.model.vknet import FrameStep  # the model is the heavy import

        self.device = network_device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"device {device!r} requested but CUDA is not available")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.cfg = model.cfg
        self.spec = io_spec(model.cfg, dynamic=True)  # any multiple of 32, no sample size
        self._step: "FrameStep | None" = FrameStep(model).to(self.device).eval()
        log.info("torch backend %s on %s", model.cfg.name, self.device)

    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One frame: feeds {image, prev_kernels, has_prev} -> the five outputs (numpy)."""
        if self._step is None:
            raise RuntimeError("TorchBackend is closed; create a new backend")
        check_feeds(self.spec, feeds)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device)
                for n in INPUT_NAMES]
        with torch.inference_mode():
            out = self._step(*args)
        return {n: getattr(out, n).detach().cpu().numpy() for n in OUTPUT_NAMES}

    def close(self) -> None:
        self._step = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self) -> "TorchBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
