"""Print a model's parameters (total and per part) and GMACs at a given input size.

    python -m vknet_core.summary kitti_step_r50 --height 384 --width 1248

The last line is a JSON object (``params``, ``params_per_part``, ``gmacs``, ``height``, ``width``).
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from vknet_core.config import PRESETS
from vknet_core.model.vknet import build_model, VideoKNet

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


def summarize(preset: str, height: int, width: int) -> dict[str, Any]:
    if height % 32 or width % 32:
        raise ValueError(f"height and width must be multiples of 32, got {height}x{width}")
    model = build_model(preset).eval()
    per = count_params(model)
    return {"preset": preset, "params": sum(per.values()), "params_per_part": per,
            "gmacs": round(count_gmacs(model, height, width), 3), "height": height, "width": width}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(PRESETS), help="model preset")
    ap.add_argument("--height", type=int, default=384, help="input height (multiple of 32)")
    ap.add_argument("--width", type=int, default=1248, help="input width (multiple of 32)")
    args = ap.parse_args(argv)
    s = summarize(args.preset, args.height, args.width)
    print(f"{s['preset']} at {s['height']}x{s['width']}")
    for part, n in s["params_per_part"].items():
        print(f"  {part:12s} {n:>12,d} params")
    print(f"  {'total':12s} {s['params']:>12,d} params, {s['gmacs']:.2f} GMACs")
    print(json.dumps(s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
