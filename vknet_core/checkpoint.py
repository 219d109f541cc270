"""Self-describing checkpoints: weights + config + class names + normalisation in one file.

save_checkpoint(model, "m.pt")          # atomic: written to a temp file, then renamed
model = load_checkpoint("m.pt")         # VideoKNet in eval mode, config from the file
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

import torch

from vknet_core.atomic import atomic_path
from vknet_core.config import VKNetConfig
from vknet_core.model.vknet import VideoKNet

FORMAT = "vknet-checkpoint-v1"
PathLike = Union[str, os.PathLike]


def checkpoint_dict(model: VideoKNet, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": cfg.to_dict(),
        "classes": list(cfg.labels.class_names),
        "thing_train_ids": list(cfg.labels.thing_train_ids),
        "pixel_mean": list(cfg.pixel_mean),
        "pixel_std": list(cfg.pixel_std),
        "extra": extra or {},
    }


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """torch.save to ``path`` through a temp file in the same folder (nothing half-written)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_checkpoint(
    model: VideoKNet, path: PathLike, extra: Optional[dict[str, Any]] = None
) -> Path:
    return atomic_torch_save(checkpoint_dict(model, extra), path)


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint file; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # weights only: a vknet checkpoint is tensors, numbers, strings, lists and dicts; nothing
        # in a downloaded file gets to run code while it is read
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of a truncated or foreign file
        first = str(e).strip().split(". ")[0].splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"{path} is not a readable vknet checkpoint ({type(e).__name__}: {first})"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path} is not a vknet checkpoint: expected format {FORMAT!r}, got {got!r} "
            "(official Video K-Net checkpoints: convert with export/convert_official.py)"
        )
    return ckpt


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> VideoKNet:
    """Rebuild the model from the config in the file and load its weights; eval mode."""
    ckpt = read_checkpoint(path)
    cfg = VKNetConfig.from_dict(ckpt["config"])
    cfg = replace(cfg, backbone=replace(cfg.backbone, pretrained=""))  # weights come from the file
    model = VideoKNet(cfg)
    model.load_state_dict(ckpt["model"], strict=True)
    return model.to(map_location).eval()
