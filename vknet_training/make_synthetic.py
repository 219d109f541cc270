"""Synthetic street-scene videos in the KITTI-STEP layout and PNG format (no download needed).

    python training/make_synthetic.py --out data/synthetic --sequences 4 --frames 30 --seed 0
    python training/make_synthetic.py --out data/synthetic --split val --seed 1   # held out

writes ``OUT/video_sequence/{split}/{seq:06d}_{frame:06d}_{leftImg8bit|panoptic}.png`` (panoptic:
R = semantic train id, G * 256 + B = instance id), readable by ``KittiStepVideo``. The scenes
come from ``vknet_core.synthetic_scene``. The split folder appears whole or not at all: it is
written under a temporary name and renamed when every frame is on disk. An existing split that
holds only such frames (an earlier run) is replaced whole, never mixed with the new frames; a
folder with anything else in it is refused.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from vknet_core.atomic import fresh_output_dir
from vknet_core.cli import run_cli
from vknet_core.panoptic_io import encode_kitti_step
from vknet_core.synthetic_scene import make_sequence

__all__ = ["make_synthetic", "make_sequence", "check_arguments", "main"]

log = logging.getLogger(__name__)

PROG = "make_synthetic.py"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FRAME_FILE = re.compile(r"^\d{6}_\d{6}_(leftImg8bit|panoptic)\.png$")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"could not write {path}")


def check_arguments(
    out: Path, sequences: int, frames: int, height: int, width: int, split: str
) -> Path:
    """The split folder to create; ValueError / FileExistsError before anything is written."""
    if sequences < 1 or frames < 1:
        raise ValueError(f"need sequences >= 1 and frames >= 1, got {sequences} and {frames}")
    if height < 32 or width < 32:
        raise ValueError(f"need a size of at least 32x32, got {height}x{width}")
    if not _SPLIT_NAME.match(split):
        raise ValueError(
            f"split must be a plain folder name (letters, digits, _ . -), got {split!r}"
        )
    folder = Path(out) / "video_sequence" / split
    if folder.exists():
        foreign = (
            [p.name for p in folder.iterdir() if not _FRAME_FILE.match(p.name)]
            if folder.is_dir()
            else [folder.name]
        )
        if foreign:
            raise FileExistsError(
                f"{folder} exists and holds more than synthetic frames (e.g. {foreign[0]!r}); "
                "remove it or choose another --out/--split"
            )
    return folder


def make_synthetic(
    out: Path,
    sequences: int = 4,
    frames: int = 30,
    height: int = 192,
    width: int = 384,
    seed: int = 0,
    split: str = "train",
) -> list[Path]:
    """Write ``sequences`` synthetic sequences to ``out/video_sequence/{split}/``.

    Returns the written panoptic PNG paths, sorted (the image of each is beside it, with
    ``_leftImg8bit.png`` in place of ``_panoptic.png``). Sequence k is generated from
    ``numpy.random.default_rng([seed, k])``, so the output is a function of the arguments.
    A failure leaves no split folder (and removes the parents this call created).
    """
    folder = check_arguments(Path(out), sequences, frames, height, width, split)
    with fresh_output_dir(folder.parent) as parent:
        tmp = Path(tempfile.mkdtemp(prefix=f".{split}.", suffix=".partial", dir=parent))
        try:
            names = []
            for k in range(sequences):
                t0 = time.perf_counter()
                seq = make_sequence(np.random.default_rng([seed, k]), frames, height, width)
                for f, (rgb, panoptic) in enumerate(seq):
                    stem = f"{k:06d}_{f:06d}"
                    _write_png(tmp / f"{stem}_leftImg8bit.png", rgb)
                    _write_png(tmp / f"{stem}_panoptic.png", encode_kitti_step(panoptic))
                    names.append(f"{stem}_panoptic.png")
                log.info("sequence %d: %d frames in %.2f s", k, frames, time.perf_counter() - t0)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
            if folder.is_dir():  # an earlier run (checked above): replaced whole
                old = Path(tempfile.mkdtemp(prefix=f".{split}.", suffix=".old", dir=parent))
                os.replace(folder, old / split)
                os.replace(tmp, folder)
                shutil.rmtree(old)
                log.info("replaced the earlier frames in %s", folder)
            else:
                os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return sorted(folder / n for n in names)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="dataset root to write into")
    p.add_argument("--sequences", type=int, default=4, help="number of sequences (default 4)")
    p.add_argument("--frames", type=int, default=30, help="frames per sequence (default 30)")
    p.add_argument("--height", type=int, default=192, help="image height (default 192)")
    p.add_argument("--width", type=int, default=384, help="image width (default 384)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; use a different one for held-out data (default 0)",
    )
    p.add_argument("--split", default="train", help="split folder name (default train)")
    return p.parse_args(argv)


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    paths = make_synthetic(
        args.out, args.sequences, args.frames, args.height, args.width, args.seed, args.split
    )
    print(
        f"wrote {len(paths)} frames ({args.sequences} sequences of {args.frames}, "
        f"{args.height}x{args.width}, seed {args.seed}) to "
        f"{args.out / 'video_sequence' / args.split} in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(PROG, lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
