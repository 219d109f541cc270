"""Convert an official Video K-Net checkpoint (mmdet key names) into a vknet checkpoint.

    python export/convert_official.py --preset kitti_step_r50 --input official.pth --output ours.pt

Every official key is consumed or listed as dropped with the reason; unknown keys, shape
mismatches and model keys left without a value stop the conversion (nothing is written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch

from vknet_core.checkpoint import save_checkpoint
from vknet_core.config import PRESETS, get_preset
from vknet_core.model.vknet import VideoKNet
from vknet_core.official import ConversionError, convert_state_dict


def read_official(path: Path) -> dict[str, torch.Tensor]:
    """An official checkpoint: ``{"state_dict": ..., "meta": ...}`` or a bare state dict."""
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected an mmdet checkpoint dict with a 'state_dict' of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def convert_official(preset: str, input_path: Path, output: Path) -> tuple[Path, dict[str, str]]:
    """Convert ``input_path`` for ``preset``; returns (output path, {dropped key: reason})."""
    cfg = get_preset(preset)
    model = VideoKNet(cfg)
    ours, dropped = convert_state_dict(read_official(input_path), cfg, model.state_dict())
    model.load_state_dict(ours, strict=True)
    extra = {"converted_from": str(input_path), "dropped_official_keys": dropped}
    return save_checkpoint(model, output, extra=extra), dropped


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model preset")
    ap.add_argument("--input", required=True, type=Path, help="official .pth checkpoint")
    ap.add_argument("--output", required=True, type=Path, help="vknet checkpoint to write")
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        out, dropped = convert_official(args.preset, args.input, args.output)
    except (ConversionError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    reasons: dict[str, list[str]] = {}
    for key, why in dropped.items():
        reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        print(f"dropped {len(keys)} keys ({keys[0]} ...): {why}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
