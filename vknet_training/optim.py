"""Optimiser, learning-rate schedule and mixed precision of a training run (video_knet.md §6).

AdamW (lr 1e-4, wd 0.05, backbone lr x0.25), linear warm-up from ``warmup_ratio`` then step
decay (x``decay_gamma`` at each fraction in ``decay_at`` of the iterations), AMP on CUDA.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch

from vknet_training.train_config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from ``warmup_ratio`` to 1 (mmcv), then x``decay_gamma`` per passed step."""
    f = 1.0
    if step < cfg.warmup_iters:
        f = 1.0 - (1.0 - cfg.warmup_ratio) * (1.0 - step / cfg.warmup_iters)
    passed = sum(step >= int(round(a * cfg.iters)) for a in cfg.decay_at)
    return f * cfg.decay_gamma**passed


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the backbone at ``lr * backbone_lr_mult`` (official paramwise_cfg)."""
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("backbone.") else rest).append(p)
    groups = [
        {"params": rest, "lr": cfg.lr},
        {"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))


def set_lr_for_step(
    optimizer: torch.optim.Optimizer, scheduler: Any, step: int, cfg: TrainConfig
) -> None:
    """The schedule is a function of (step, this config): a resumed run may change --iters."""
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * lr_factor(step, cfg)


def amp_context(device: torch.device, enabled: bool) -> tuple[Any, Optional[torch.amp.GradScaler]]:
    """(autocast context, grad scaler or None): bf16 where supported, else fp16 + scaler."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
