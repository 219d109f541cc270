"""``TrainConfig``: everything one training run depends on, and its command line.

The dataclass is the single statement of every default: ``build_parser`` takes each flag's
default from the field of the same name and its help prints it with ``%(default)s``, so the
dataclass, argparse and ``--help`` cannot disagree.

    cfg = parse_args(["--preset", "tiny", "--data", "data/synthetic", "--out", "runs/tiny"])
    check_config(cfg)          # ValueError naming the flag, before anything is created
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from vknet_core.cli import ArgumentParser
from vknet_core.config import PRESETS
from vknet_core.losses import LossConfig

# Default --iters: the GPU schedule (12 epochs of the official recipe, video_knet.md §1).
# On a CPU it takes hours even for the tiny preset; the figure is in the README (Training).
DEFAULT_ITERS = 20000


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (written to ``OUT/train_config.json``)."""

    preset: str
    data: Path
    out: Path
    iters: int = DEFAULT_ITERS
    batch_size: int = 2  # global: split evenly over the ranks
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.25
    clip_grad: float = 1.0
    warmup_iters: int = 1000
    warmup_ratio: float = 1e-3
    decay_at: tuple[float, ...] = (9 / 12, 11 / 12)  # fractions of iters (epochs 9, 11 of 12)
    decay_gamma: float = 0.1
    crop: tuple[int, int] = (384, 1248)
    scale: tuple[float, float] = (0.5, 2.0)
    split: str = "train"
    val_data: Optional[Path] = None
    val_split: str = "val"
    val_every: int = 0  # 0: validate only at the end (when --val-data is given)
    val_max_sequences: Optional[int] = None
    ckpt_every: int = 1000
    log_every: int = 10
    resume: Optional[Path] = None
    init: Optional[Path] = None  # initialise weights from a vknet checkpoint (fine-tuning)
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    threads: Optional[int] = None  # torch CPU threads per process (None: torch's default)
    amp: bool = True  # CUDA only
    norm_eval: Optional[bool] = None  # override the preset's BatchNorm mode
    progress: bool = True
    loss: LossConfig = field(default_factory=LossConfig)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types (paths as strings), as written to ``train_config.json``."""

        def plain(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return str(v) if isinstance(v, Path) else v

        return plain(dataclasses.asdict(self))


def check_config(cfg: TrainConfig) -> None:
    """Value checks that need no file: ``ValueError`` naming the flag, what it got and wants."""
    if cfg.preset not in PRESETS:
        raise ValueError(
            f"--preset {cfg.preset!r} is not a preset; expected one of {sorted(PRESETS)}"
        )
    positive = {
        "--iters": cfg.iters,
        "--batch-size": cfg.batch_size,
        "--ckpt-every": cfg.ckpt_every,
        "--log-every": cfg.log_every,
    }
    for flag, v in positive.items():
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    for flag, v in {
        "--val-every": cfg.val_every,
        "--warmup-iters": cfg.warmup_iters,
        "--workers": cfg.workers,
    }.items():
        if v < 0:
            raise ValueError(f"{flag} must be >= 0, got {v}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {cfg.threads}")
    if cfg.val_max_sequences is not None and cfg.val_max_sequences < 1:
        raise ValueError(f"--val-max-sequences must be >= 1, got {cfg.val_max_sequences}")
    if cfg.lr <= 0 or cfg.clip_grad <= 0:
        raise ValueError(f"--lr and --clip-grad must be > 0, got {cfg.lr} and {cfg.clip_grad}")
    if len(cfg.crop) != 2 or min(cfg.crop) < 32:
        raise ValueError(f"--crop must be two sizes H W >= 32, got {cfg.crop}")
    if len(cfg.scale) != 2 or not 0 < cfg.scale[0] <= cfg.scale[1]:
        raise ValueError(f"--scale must be LO HI with 0 < LO <= HI, got {cfg.scale}")
    if any(not 0 < a <= 1 for a in cfg.decay_at):
        raise ValueError(f"--decay-at takes fractions of --iters in (0, 1], got {cfg.decay_at}")
    for flag, path in (("--data", cfg.data), ("--val-data", cfg.val_data)):
        if path is not None and not Path(path).is_dir():
            raise FileNotFoundError(f"{flag} {path}: no such folder (expected a dataset root)")
    if cfg.init is not None and cfg.resume is not None:
        raise ValueError(
            "give --init (new run from weights) or --resume (continue a run), not both"
        )
    if cfg.init is not None and not Path(cfg.init).is_file():
        raise FileNotFoundError(f"--init {cfg.init}: no such checkpoint file")


# ----------------------------------------------------------------------------- command line

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _default(name: str) -> Any:
    f = _FIELDS[name]
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    assert value is not dataclasses.MISSING, name
    return value


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def build_parser(description: str = "") -> argparse.ArgumentParser:
    """Flags named as the ``TrainConfig`` fields; defaults read from the dataclass."""
    p = ArgumentParser(
        prog="train.py",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def add(group: Any, flag: str, help: str, **kw: Any) -> None:
        dest = kw.pop("dest", flag.lstrip("-").replace("-", "_"))
        group.add_argument(flag, dest=dest, default=_default(dest), help=help, **kw)

    g = p.add_argument_group("run")
    g.add_argument(
        "--preset",
        required=True,
        metavar="PRESET",
        help=f"model preset: {', '.join(sorted(PRESETS))}",
    )
    g.add_argument(
        "--data",
        type=Path,
        required=True,
        help="dataset root (the preset's dataset layout, e.g. KITTI-STEP)",
    )
    g.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and logs")
    add(g, "--split", "training split folder (default %(default)s)")
    add(g, "--resume", "run folder or last.pt to continue from", type=Path)
    add(
        g,
        "--init",
        "vknet checkpoint to initialise the weights from (same preset, or one "
        "whose tensors have the same shapes)",
        type=Path,
    )
    add(
        g, "--seed", "seed of weights, data order and augmentation (default %(default)s)", type=int
    )
    add(g, "--device", "auto|cpu|cuda (default %(default)s)")
    add(g, "--workers", "data loader workers (default %(default)s)", type=int)
    add(
        g,
        "--threads",
        "torch CPU threads per process (1 is fastest on a busy machine; default: torch's choice)",
        type=int,
    )
    g = p.add_argument_group("optimisation")
    add(
        g,
        "--iters",
        "iterations (default %(default)s, the GPU schedule; on a CPU that is "
        "hours even for the tiny preset: see the README's Training section, and start with "
        "--iters 200)",
        type=int,
    )
    add(
        g, "--batch-size", "global batch, split over the processes (default %(default)s)", type=int
    )
    add(g, "--lr", "AdamW learning rate (default %(default)s)", type=float)
    add(g, "--weight-decay", "AdamW weight decay (default %(default)s)", type=float)
    add(g, "--backbone-lr-mult", "backbone learning rate factor (default %(default)s)", type=float)
    add(g, "--warmup-iters", "linear warm-up iterations (default %(default)s)", type=int)
    add(
        g,
        "--decay-at",
        "LR x0.1 at these fractions of --iters (default %(default)s)",
        type=float,
        nargs="*",
    )
    add(g, "--clip-grad", "gradient L2 clip (default %(default)s)", type=float)
    add(g, "--no-amp", "disable mixed precision on CUDA", dest="amp", action="store_false")
    add(
        g,
        "--norm-eval",
        "on: freeze all BatchNorm statistics; off: let the preset's "
        "BatchNorm train; default: the preset's. Without a GPU, DDP has no SyncBatchNorm: use "
        "'on' for results independent of the number of processes",
        type=_on_off,
        metavar="{on,off}",
    )
    g = p.add_argument_group("data")
    add(g, "--crop", "training crop (default %(default)s)", type=int, nargs=2, metavar=("H", "W"))
    add(
        g,
        "--scale",
        "random resize range (default %(default)s)",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
    )
    g = p.add_argument_group("validation and logging")
    add(g, "--val-data", "dataset root to validate on (STQ, VPQ)", type=Path)
    add(g, "--val-split", "validation split (default %(default)s)")
    add(
        g,
        "--val-every",
        "validate every N iterations (default %(default)s: only at the end)",
        type=int,
    )
    add(g, "--val-max-sequences", "validate on the first N sequences", type=int)
    add(g, "--ckpt-every", "write last.pt every N iterations (default %(default)s)", type=int)
    add(g, "--log-every", "log losses every N iterations (default %(default)s)", type=int)
    add(g, "--no-progress", "no tqdm progress bar", dest="progress", action="store_false")
    return p


def parse_args(argv: Optional[Sequence[str]] = None, description: str = "") -> TrainConfig:
    """Command line -> ``TrainConfig`` (argparse errors: one line on stderr, exit 2)."""
    a = vars(build_parser(description).parse_args(argv))
    for name in ("decay_at", "crop", "scale"):
        a[name] = tuple(a[name])
    return TrainConfig(**{k: v for k, v in a.items() if k in _FIELDS})
