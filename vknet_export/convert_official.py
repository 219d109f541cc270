"""Convert an official Video K-Net checkpoint (mmdet key names) into a vknet checkpoint.

    python export/convert_official.py --preset kitti_step_r50 --input official.pth --output ours.pt

Every official key is consumed or listed as dropped with the reason; unknown keys, shape
mismatches and model keys left without a value stop the conversion (nothing is written).

The dataset is checked before the weights: an mmdet checkpoint's ``meta`` carries the training
config (``meta["config"]``, ``meta["exp_name"]``); when it names a dataset that is not the
preset's (KITTI-STEP weights into ``cityscapes_vps_r50``: both have 19 classes, so the shapes
would fit) the conversion stops; when the file has no such meta a warning says it could not be
checked. The file is read with ``torch.load(weights_only=True)``; an old checkpoint whose meta
holds other Python objects needs ``--allow-pickle``, which runs the file's pickled code: use it
only for files from a source you trust.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Optional

import torch

from vknet_core.checkpoint import save_checkpoint
from vknet_core.cli import ArgumentParser, run_cli
from vknet_core.config import PRESETS, get_preset
from vknet_core.model.vknet import VideoKNet
from vknet_core.official import ConversionError, convert_state_dict

log = logging.getLogger(__name__)

# Names the official configs use for each dataset (config text and experiment names), matched
# after lower-casing and dropping "-", "_" and spaces.
DATASET_MARKERS = {
    "kitti_step": ("kittistep",),
    "cityscapes_vps": ("cityscapesvps", "cityvps", "cityscapesdvps"),
    "vipseg": ("vipseg",),
}


class UnsafeCheckpointError(ValueError):
    """The safe loader refused the file (it needs pickled Python objects)."""


def load_official(path: Path, allow_pickle: bool = False) -> Any:
    """``torch.load`` the file safely; with ``allow_pickle`` fall back to full unpickling."""
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the safe loader names a refused global; anything else is corrupt
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused is None:
            raise ValueError(
                f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_reason(e)})"
            ) from None
        if not allow_pickle:
            raise UnsafeCheckpointError(
                f"{path} holds a Python object ({refused[1]}) that torch.load(weights_only=True) "
                "does not load; if you trust where the file comes from, rerun with "
                "--allow-pickle"
            ) from None
    log.warning("--allow-pickle: unpickling %s with weights_only=False", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_reason(e)})"
        ) from None


def _reason(e: BaseException) -> str:
    """The informative line of a torch.load error (its first line, or the unpickler's)."""
    text = str(e).strip()
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        return detail[1].strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_official(
    path: Path, allow_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], Optional[dict[str, Any]]]:
    """(state dict without ``module.`` prefixes, meta or None) of an official checkpoint:
    ``{"state_dict": ..., "meta": ...}`` or a bare state dict."""
    obj = load_official(path, allow_pickle)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if (
        not isinstance(sd, dict)
        or not sd
        or not all(isinstance(v, torch.Tensor) for v in sd.values())
    ):
        raise ValueError(
            f"{path}: expected an mmdet checkpoint dict with a 'state_dict' of "
            f"tensors, got {type(obj).__name__}"
        )
    meta = obj.get("meta") if isinstance(obj, dict) and "state_dict" in obj else None
    return {k.removeprefix("module."): v for k, v in sd.items()}, (
        meta if isinstance(meta, dict) else None
    )


def official_datasets(meta: Optional[dict[str, Any]]) -> set[str]:
    """Datasets the official meta names (config text, experiment and config file names)."""
    if not meta:
        return set()
    text = " ".join(str(meta.get(k, "")) for k in ("config", "exp_name", "config_file", "cfg"))
    flat = re.sub(r"[-_\s]", "", text.lower())
    return {ds for ds, marks in DATASET_MARKERS.items() if any(m in flat for m in marks)}


def check_dataset(meta: Optional[dict[str, Any]], preset: str, path: Path) -> None:
    """Stop when the file was trained on another dataset than ``preset``'s; warn when the
    file does not say."""
    want = get_preset(preset).labels.dataset
    found = official_datasets(meta)
    if not found:
        log.warning(
            "%s has no training config in its meta: cannot check that it was trained on "
            "%s (preset %s)",
            path,
            want,
            preset,
        )
    elif want not in found:
        raise ConversionError(
            f"{path} was trained on {', '.join(sorted(found))} (its meta config says so), but "
            f"preset {preset!r} is for {want}; choose the preset of that dataset"
        )


def convert_official(
    preset: str, input_path: Path, output: Path, allow_pickle: bool = False
) -> tuple[Path, dict[str, str]]:
    """Convert ``input_path`` for ``preset``; returns (output path, {dropped key: reason}).

    Nothing is written unless every check passes (the output is written atomically).
    """
    cfg = get_preset(preset)
    official, meta = read_official(Path(input_path), allow_pickle)
    check_dataset(meta, preset, Path(input_path))
    model = VideoKNet(cfg)
    ours, dropped = convert_state_dict(official, cfg, model.state_dict())
    model.load_state_dict(ours, strict=True)
    extra = {"converted_from": str(input_path), "dropped_official_keys": dropped}
    return save_checkpoint(model, output, extra=extra), dropped


def parse_args(argv: Optional[list[str]]) -> Any:
    ap = ArgumentParser(prog="convert_official.py", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model preset")
    ap.add_argument("--input", required=True, type=Path, help="official .pth checkpoint")
    ap.add_argument("--output", required=True, type=Path, help="vknet checkpoint to write")
    ap.add_argument(
        "--allow-pickle",
        action="store_true",
        help="if the safe loader (weights_only=True) refuses the file, unpickle it "
        "fully; this runs code stored in the file, so only for trusted files",
    )
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    def body() -> int:
        out, dropped = convert_official(args.preset, args.input, args.output, args.allow_pickle)
        reasons: dict[str, list[str]] = {}
        for key, why in dropped.items():
            reasons.setdefault(why, []).append(key)
        for why, keys in reasons.items():
            print(f"dropped {len(keys)} keys ({keys[0]} ...): {why}")
        print(f"wrote {out}")
        return 0

    return run_cli("convert_official.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
