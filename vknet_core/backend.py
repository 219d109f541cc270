"""The per-frame ``Backend`` protocol: what every runtime (PyTorch, ONNX Runtime, TensorRT) offers.

    backend.step(feeds) -> outputs   # feeds/outputs named and shaped by backend.spec (io_spec)
    backend.device                   # torch.device where the network runs
    backend.spec                     # IOSpec: fixed size, or dynamic (height = width = 0)
    backend.cfg                      # the model's VKNetConfig, given at construction
    backend.close()                  # frees the model / session / engine

``VideoPanopticPipeline`` accepts anything that satisfies it and runs the panoptic merge on
``backend.device`` (ONNX Runtime on CUDA -> merge on CUDA). ``vknet_core.runtime.TorchBackend``
implements it here; ``vknet_export`` implements it for ONNX Runtime and TensorRT.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, Union, runtime_checkable

import numpy as np
import torch

from vknet_core.config import VKNetConfig
from vknet_core.io_spec import IOSpec

__all__ = ["Backend", "network_device"]


@runtime_checkable
class Backend(Protocol):
    """One network step per frame; the kernel state goes in and out explicitly as arrays.

    step:   {image uint8 [1,H,W,3], prev_kernels float32 [1,N,C], has_prev float32 [1]} ->
            {cls_prob [1,N,K], mask_logits [1,N,h,w], cur_kernels [1,N,C], track_embed [1,Q,E],
            sem_logits [1,K,h,w]} (float32 numpy arrays; names from ``io_spec``)
    """

    name: str
    device: torch.device
    spec: IOSpec
    cfg: VKNetConfig

    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


_ACCELERATORS = {"cuda": "cuda", "tensorrt": "cuda"}  # runtime device kind -> torch device kind


def network_device(device: Union[str, torch.device]) -> torch.device:
    """A runtime's device string ("cpu", "cuda:1", "tensorrt:0") as the torch device it runs on.

    ValueError for anything else, saying what was received.
    """
    if isinstance(device, torch.device):
        return device
    kind, sep, index = str(device).partition(":")
    if kind == "cpu" and not sep:
        return torch.device("cpu")
    if kind in _ACCELERATORS and (not sep or index.isdigit()):
        return torch.device(_ACCELERATORS[kind], int(index) if index else 0)
    raise ValueError(f"device must be cpu, cuda[:i] or tensorrt[:i], got {device!r}")
