"""vknet_core: Video K-Net in PyTorch (model, losses, merge, tracker, metrics, pipeline).

Public API::

    import vknet_core
    model = vknet_core.build_model("tiny")                 # preset name or a VKNetConfig
    state = model.initial_state(batch_size=1)              # (prev_kernels [1,N,C], has_prev [1])
    out = model(image, *state)                             # FrameOutputs (types.py)
    vknet_core.save_checkpoint(model, "m.pt")
    model = vknet_core.load_checkpoint("m.pt")             # eval mode, config from the file

Names are resolved lazily so that light submodules (metrics, tracking) import without the model.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "build_model": "vknet_core.model.vknet",
    "VideoKNet": "vknet_core.model.vknet",
    "load_checkpoint": "vknet_core.checkpoint",
    "save_checkpoint": "vknet_core.checkpoint",
    "PRESETS": "vknet_core.config",
    "VKNetConfig": "vknet_core.config",
    "get_preset": "vknet_core.config",
    "FrameOutputs": "vknet_core.types",
    "PanopticFrame": "vknet_core.types",
    "Segment": "vknet_core.types",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vknet_core' has no attribute {name!r}")
