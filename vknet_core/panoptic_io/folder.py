"""Folders of panoptic label files in any of ``FORMATS``, grouped into sequences and frames.

Layouts (``shared/reference/metrics.md`` §4, ``video_knet.md`` §7.5, §8):

* ``kitti_step``: ``panoptic_maps/{split}/SEQ(%04d)/FRAME(%06d).png`` (deeplab2) or flattened
  ``{seq:06d}_{frame:06d}_panoptic.png`` (Video K-Net), at any depth.
* ``vipseg``: ``[panomasks/]VIDEO/FRAME.png``.
* ``cityscapes_vps``: one COCO-panoptic json and its PNGs beside it (or in ``panoptic_video/``,
  ``pan_pred/``, ``pan_gt/``); the video id is the file name's first ``_`` field.

Void is ``ignore_label * label_divisor``; GT thing pixels with instance 0 are crowd (metrics).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vknet_core.panoptic_io.coco_panoptic import (
    TrackNumbering,
    decode_coco_panoptic,
    thing_categories,
)
from vknet_core.panoptic_io.kitti_step import read_kitti_step, write_kitti_step
from vknet_core.panoptic_io.png import PanopticFormatError, read_rgb_png_u8
from vknet_core.panoptic_io.vipseg import read_vipseg, write_vipseg

FORMATS: tuple[str, ...] = ("kitti_step", "cityscapes_vps", "vipseg")


_FLAT = re.compile(r"^(\d+)_(\d+)(?:_panoptic)?$")
_DIGITS = re.compile(r"^\d+$")


@dataclass(frozen=True)
class FrameRef:
    """One label file: ``sequence`` key, ``frame`` key (sortable strings) and where it is."""

    sequence: str
    frame: str
    path: Path
    segments_info: tuple = ()  # cityscapes_vps only


class PanopticFolder:
    """A folder of panoptic label files in one of ``FORMATS``, grouped into sequences.

    ``sequences()`` lists sequence keys, ``frames(seq)`` the sorted frame keys and ``read(seq)``
    yields int64 [H, W] panoptic ids in frame order. Keys are normalised strings so a GT folder and
    a prediction folder in different layouts still match (KITTI-STEP: ``{seq:06d}`` and
    ``{frame:06d}``).

    Args:
        root: the folder (KITTI-STEP: any folder holding the PNGs at any depth; VIPSeg: the
            ``panomasks`` folder or its parent; Cityscapes-VPS: a folder with one COCO-panoptic
            json and its PNGs beside it, in ``panoptic_video/`` or ``pan_pred/``).
        fmt: one of ``FORMATS``.
        things: thing classes; Cityscapes-VPS decodes with the json's ``isthing`` flags and uses
            these only for a json without ``categories`` (``coco_panoptic.thing_categories``).
        json_file: Cityscapes-VPS json (default: the only ``*.json`` in ``root``).
    """

    def __init__(
        self,
        root: str | Path,
        fmt: str,
        label_divisor: int = 1000,
        ignore_label: int = 255,
        things: tuple[int, ...] = (),
        json_file: str | Path | None = None,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"unknown panoptic format {fmt!r}; expected one of {FORMATS}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise PanopticFormatError(f"{fmt} folder not found: {self.root}")
        self.fmt = fmt
        self.label_divisor = label_divisor
        self.ignore_label = ignore_label
        self.things = tuple(things)
        self.coco_things: frozenset[int] = frozenset()  # set by the Cityscapes-VPS scan
        refs = {
            "kitti_step": self._scan_kitti_step,
            "vipseg": self._scan_vipseg,
            "cityscapes_vps": lambda: self._scan_coco(json_file),
        }[fmt]()
        self._frames: dict[str, dict[str, FrameRef]] = {}
        for r in refs:
            seq = self._frames.setdefault(r.sequence, {})
            if r.frame in seq:
                raise PanopticFormatError(
                    f"two files for sequence {r.sequence} frame {r.frame} in {self.root}: "
                    f"{seq[r.frame].path} and {r.path}"
                )
            seq[r.frame] = r
        if not self._frames:
            raise PanopticFormatError(
                f"no {fmt} panoptic label files found in {self.root} ({_LAYOUT_HELP[fmt]})"
            )
        self._frames = {s: dict(sorted(f.items())) for s, f in sorted(self._frames.items())}

    def sequences(self) -> list[str]:
        return list(self._frames)

    def frames(self, sequence: str) -> list[str]:
        return list(self._frames[sequence])

    def ref(self, sequence: str, frame: str) -> FrameRef:
        return self._frames[sequence][frame]

    def __len__(self) -> int:
        return sum(len(f) for f in self._frames.values())

    def read(self, sequence: str) -> Iterator[np.ndarray]:
        """Yield the frames of ``sequence`` in order as int64 [H, W] panoptic ids."""
        numbering = TrackNumbering(self.label_divisor)
        for ref in self._frames[sequence].values():
            yield self.read_ref(ref, numbering)

    def read_ref(self, ref: FrameRef, numbering: TrackNumbering | None = None) -> np.ndarray:
        D, ign = self.label_divisor, self.ignore_label
        if self.fmt == "kitti_step":
            return read_kitti_step(ref.path, D, ign)
        if self.fmt == "vipseg":
            return read_vipseg(ref.path, D, ign)
        rgb = read_rgb_png_u8(ref.path, "COCO-panoptic PNG")
        return decode_coco_panoptic(
            rgb, ref.segments_info, self.coco_things, numbering or TrackNumbering(D), D, ign
        )

    # -- layouts

    def _scan_kitti_step(self) -> list[FrameRef]:
        refs = []
        for p in sorted(self.root.rglob("*.png")):
            m = _FLAT.match(p.stem)
            if m:
                refs.append(FrameRef(f"{int(m.group(1)):06d}", f"{int(m.group(2)):06d}", p))
            elif _DIGITS.match(p.stem) and _DIGITS.match(p.parent.name) and p.parent != self.root:
                refs.append(FrameRef(f"{int(p.parent.name):06d}", f"{int(p.stem):06d}", p))
        return refs

    def _scan_vipseg(self) -> list[FrameRef]:
        base = self.root / "panomasks" if (self.root / "panomasks").is_dir() else self.root
        return [
            FrameRef(p.parent.relative_to(base).as_posix(), p.stem, p)
            for p in sorted(base.rglob("*.png"))
        ]

    def _scan_coco(self, json_file: str | Path | None) -> list[FrameRef]:
        if json_file is None:
            cands = sorted(self.root.glob("*.json"))
            if len(cands) != 1:
                raise PanopticFormatError(
                    f"expected exactly one COCO-panoptic json in {self.root}, "
                    f"found {[c.name for c in cands]} "
                    "(pass json_file)"
                )
            json_file = cands[0]
        json_file = Path(json_file)
        try:
            data = json.loads(json_file.read_text())
            annotations = data["annotations"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise PanopticFormatError(
                f"{json_file}: not a COCO-panoptic json with 'annotations' "
                f"({type(e).__name__}: {e})"
            ) from None
        self.coco_things = thing_categories(data.get("categories"), self.things, str(json_file))
        refs = []
        for a in annotations:
            name = a["file_name"]
            name = name if name.endswith(".png") else Path(name).stem + ".png"
            for sub in ("", "panoptic_video", "pan_pred", "pan_gt"):
                p = self.root / sub / name
                if p.is_file():
                    break
            else:
                raise PanopticFormatError(
                    f"{json_file} lists {name} but it is not in {self.root} "
                    "(nor in panoptic_video/, pan_pred/ or pan_gt/)"
                )
            parts = Path(name).stem.split("_")
            frame = parts[1] if len(parts) > 1 else Path(name).stem
            refs.append(FrameRef(parts[0], frame, p, tuple(a.get("segments_info", ()))))
        return refs


_LAYOUT_HELP = {
    "kitti_step": "expected SEQ/FRAME.png or SEQ_FRAME[_panoptic].png with R = semantic, "
    "G*256+B = instance",
    "vipseg": "expected [panomasks/]VIDEO/FRAME.png single-channel masks",
    "cityscapes_vps": "expected a COCO-panoptic json and its PNGs",
}


def write_panoptic(
    path: str | Path,
    panoptic: np.ndarray,
    fmt: str,
    label_divisor: int = 1000,
    ignore_label: int = 255,
) -> Path:
    """Write one frame as a ``kitti_step`` or ``vipseg`` PNG.

    Cityscapes-VPS needs a json too: use ``encode_coco_panoptic``.
    """
    if fmt == "kitti_step":
        return write_kitti_step(path, panoptic, label_divisor)
    if fmt == "vipseg":
        return write_vipseg(path, panoptic, label_divisor, ignore_label)
    raise ValueError(
        f"write_panoptic writes 'kitti_step' or 'vipseg'; for {fmt!r} use encode_coco_panoptic "
        "and write the json too"
    )
