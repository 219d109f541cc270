"""Print a model's parameters (total and per part) and GMACs at a given input size.

    python -m vknet_core.summary kitti_step_r50 --height 384 --width 1248
    python -m vknet_core.summary --checkpoint m.pt          # the model a checkpoint describes

The last line is a JSON object (``params``, ``params_per_part``, ``gmacs``, ``height``, ``width``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch.utils.flop_counter import FlopCounterMode

from vknet_core.cli import ArgumentParser, run_cli
from vknet_core.config import PRESETS, VKNetConfig, get_preset
from vknet_core.model.vknet import VideoKNet, build_model

PARTS = ("backbone", "fpn", "sem_fpn", "kernel_head", "stages", "linker", "embed_head")


def count_params(model: VideoKNet) -> dict[str, int]:
    """Parameters per top-level part; every parameter belongs to exactly one part."""
    per = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in PARTS}
    assert sum(per.values()) == sum(p.numel() for p in model.parameters())
    return per


@torch.no_grad()
def count_gmacs(model: VideoKNet, height: int, width: int) -> float:
    """Multiply-accumulates of one linked frame (has_prev=1), from torch's FLOP counter / 2."""
    x = torch.zeros(1, 3, height, width)
    prev, _ = model.initial_state(1)
    with FlopCounterMode(display=False) as counter:
        model(x, prev, torch.ones(1))
    return counter.get_total_flops() / 2e9


def checkpoint_config(path: Union[str, Path]) -> VKNetConfig:
    """The config stored in a vknet checkpoint (its weights are not needed for a summary)."""
    from vknet_core.checkpoint import read_checkpoint

    cfg = VKNetConfig.from_dict(read_checkpoint(path)["config"])
    return replace(cfg, backbone=replace(cfg.backbone, pretrained=""))


def summarize(model: Union[str, VKNetConfig], height: int, width: int) -> dict[str, Any]:
    """Parameters per part and GMACs of a preset name or config at ``height`` x ``width``."""
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(
            f"height and width must be positive multiples of 32, got "
            f"{height}x{width} (e.g. 384x1248)"
        )
    cfg = get_preset(model) if isinstance(model, str) else model
    net = build_model(cfg).eval()
    per = count_params(net)
    return {
        "preset": cfg.name,
        "params": sum(per.values()),
        "params_per_part": per,
        "gmacs": round(count_gmacs(net, height, width), 3),
        "height": height,
        "width": width,
    }


def main(argv: Optional[list[str]] = None) -> int:
    ap = ArgumentParser(prog="vknet_core.summary", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="model preset")
    src.add_argument("--checkpoint", type=Path, help="vknet checkpoint: summarise its model")
    ap.add_argument("--height", type=int, default=384, help="input height (multiple of 32)")
    ap.add_argument("--width", type=int, default=1248, help="input width (multiple of 32)")
    args = ap.parse_args(argv)

    def body() -> int:
        model = args.preset if args.checkpoint is None else checkpoint_config(args.checkpoint)
        s = summarize(model, args.height, args.width)
        print(f"{s['preset']} at {s['height']}x{s['width']}")
        for part, n in s["params_per_part"].items():
            print(f"  {part:12s} {n:>12,d} params")
        print(f"  {'total':12s} {s['params']:>12,d} params, {s['gmacs']:.2f} GMACs")
        print(json.dumps(s))
        return 0

    return run_cli("vknet_core.summary", body)


if __name__ == "__main__":
    raise SystemExit(main())
