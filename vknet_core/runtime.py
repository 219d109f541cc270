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
from typing import Optional, Union

import numpy as np
import torch

from vknet_core.backend import network_device
from vknet_core.io_spec import INPUT_NAMES, OUTPUT_NAMES, check_feeds, io_spec

log = logging.getLogger(__name__)

# Torch intra-op threads ``make_backend`` uses when none are given (README "Threads"): on 2
# cores, 2 threads ran the tiny network 1.5x faster on an idle machine but 2.2x slower than
# 1 thread with one core busy (OpenMP threads wait on each other), and a robot shares its cores.
ROBOT_TORCH_THREADS = 1


class TorchBackend:
    """Runs ``FrameStep(model)`` (uint8 in, normalisation inside) with PyTorch.

    model: a ``VideoKNet`` (not modified: the backend runs a copy with every frozen BatchNorm
    folded into its convolution, ``vknet_core.model.fold_bn``); device: "cpu", "cuda", "cuda:1",
    ... TF32 is switched off on CUDA so results stay within the parity tolerances.
    threads: CPU intra-op threads (``torch.set_num_threads``, which is process-wide); None keeps
    the current setting (``make_backend`` passes ``ROBOT_TORCH_THREADS`` unless told otherwise).
    Outputs are contiguous (C order) numpy arrays.
    """

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        device: Union[str, torch.device] = "cpu",
        threads: Optional[int] = None,
    ):
        from vknet_core.model.fold_bn import fold_batchnorm
        from vknet_core.model.vknet import FrameStep  # the model is the heavy import

        self.device = network_device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"device {device!r} requested but CUDA is not available")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1 (or None to keep torch's), got {threads}")
            torch.set_num_threads(threads)
        self.cfg = model.cfg
        self.spec = io_spec(model.cfg, dynamic=True)  # any multiple of 32, no sample size
        folded, n_bn = fold_batchnorm(model)
        self._step: FrameStep | None = FrameStep(folded).to(self.device).eval()
        log.info(
            "torch backend %s on %s (%d BatchNorms folded, %d threads)",
            model.cfg.name,
            self.device,
            n_bn,
            torch.get_num_threads(),
        )

    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One frame: feeds {image, prev_kernels, has_prev} -> the five outputs (numpy)."""
        if self._step is None:
            raise RuntimeError("TorchBackend is closed; create a new backend")
        check_feeds(self.spec, feeds)
        args = [
            torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in INPUT_NAMES
        ]
        with torch.inference_mode():
            out = self._step(*args)
        # sem_logits leaves the model channels_last (a permute); C order keeps the merge fast
        return {
            n: np.ascontiguousarray(getattr(out, n).detach().cpu().numpy()) for n in OUTPUT_NAMES
        }

    def close(self) -> None:
        self._step = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self) -> TorchBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
