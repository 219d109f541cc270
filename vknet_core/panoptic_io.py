"""Panoptic label files <-> panoptic id arrays (``semantic * label_divisor + instance``).

Formats (``shared/reference/metrics.md`` §4, ``video_knet.md`` §7.5, §8):

* ``kitti_step``: RGB PNG, R = semantic train id (255 void), G * 256 + B = instance id. GT lives in
  ``panoptic_maps/{split}/SEQ(%04d)/FRAME(%06d).png`` (deeplab2) or flattened as
  ``{seq:06d}_{frame:06d}_panoptic.png`` (Video K-Net); both are found by ``PanopticFolder``.
* ``vipseg``: single-channel PNG (8/16 bit) in ``panomasks/VIDEO/FRAME.png``: 0 (and the known bad
  value 200) void, 1..124 = category + 1 without instance, >= 125 = (category + 1) * 100 +
  instance. Decoded into the ``vipseg_r50`` preset's train ids (58 thing categories first, then
  stuff, both in
  category order) with thing instance = file instance + 1, as ``vknet_training.datasets.vipseg``.
* ``cityscapes_vps``: COCO-panoptic video format (VPSNet): RGB PNG, segment id
  = R + 256 G + 256^2 B
  (0 void), plus a json whose ``annotations`` carry ``file_name`` and ``segments_info`` (``id``,
  ``category_id`` = train id, ``iscrowd``). The video id is the file name's first ``_`` field.
  Segment ids are consistent within a video, so thing segments are numbered 1, 2, ... per video in
  order of first appearance; stuff and crowd get instance 0.

Void is ``ignore_label * label_divisor``; GT thing pixels with instance 0 are crowd (metrics).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("kitti_step", "cityscapes_vps", "vipseg")


class PanopticFormatError(ValueError):
    """A panoptic label file or folder does not have the expected format."""


# ----------------------------------------------------------------------------- PNG primitives


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as stored: uint8/uint16 [H, W] or uint8 [H, W, 3] in R, G, B order."""
    path = Path(path)
    if not path.is_file():
        raise PanopticFormatError(f"PNG file not found: {path}")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise PanopticFormatError(f"cannot decode {path} (expected a PNG image)")
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        arr = np.ascontiguousarray(arr[:, :, ::-1])  # BGR -> RGB
    return arr


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write uint8 [H, W, 3] RGB or uint8/uint16 [H, W] losslessly; creates parent folders."""
    path = Path(path)
    if image.ndim == 3 and image.dtype == np.uint8:
        image = np.ascontiguousarray(image[:, :, ::-1])
    elif not (image.ndim == 2 and image.dtype in (np.uint8, np.uint16)):
        raise ValueError(
            f"write_png takes uint8 [H,W,3] or uint8/uint16 [H,W], got {image.shape} {image.dtype}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


def _split(panoptic: np.ndarray, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(panoptic)
    if not np.issubdtype(p.dtype, np.integer):
        raise TypeError(f"panoptic ids must be integers, got dtype {p.dtype}")
    if p.ndim != 2:
        raise ValueError(f"expected a panoptic map [H,W], got shape {p.shape}")
    p = p.astype(np.int64)
    if p.size and p.min() < 0:
        raise ValueError(f"panoptic ids must be >= 0, got min {int(p.min())}")
    return p // label_divisor, p % label_divisor


# ----------------------------------------------------------------------------- KITTI-STEP


def decode_kitti_step(
    rgb: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """KITTI-STEP PNG pixels uint8 [H, W, 3] (R, G, B) -> int64 [H, W] panoptic ids.

    Void pixels (R = ignore_label) become ``ignore_label * label_divisor`` whatever G, B hold.
    Raises PanopticFormatError if an instance id is not below ``label_divisor``.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PanopticFormatError(
            f"KITTI-STEP panoptic PNGs are uint8 RGB [H,W,3], got {rgb.shape} {rgb.dtype}"
        )
    sem = rgb[..., 0].astype(np.int64)
    inst = rgb[..., 1].astype(np.int64) * 256 + rgb[..., 2].astype(np.int64)
    void = sem == ignore_label
    top = int(inst[~void].max(initial=0))
    if top >= label_divisor:
        raise PanopticFormatError(
            f"instance id {top} does not fit below label_divisor {label_divisor}"
        )
    return np.where(void, ignore_label * label_divisor, sem * label_divisor + inst)


def encode_kitti_step(panoptic: np.ndarray, label_divisor: int = 1000) -> np.ndarray:
    """int [H,W] panoptic ids -> uint8 [H,W,3]: R = semantic, G = inst // 256, B = inst % 256."""
    sem, inst = _split(panoptic, label_divisor)
    if sem.max(initial=0) > 255 or inst.max(initial=0) > 65535:
        raise ValueError(
            f"KITTI-STEP PNGs hold semantic <= 255 and instance <= 65535, got max "
            f"{int(sem.max())} and {int(inst.max())}"
        )
    return np.stack([sem, inst // 256, inst % 256], axis=-1).astype(np.uint8)


def read_kitti_step(
    path: str | Path, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """Read a KITTI-STEP panoptic PNG -> int64 [H, W] panoptic ids."""
    try:
        return decode_kitti_step(read_png(path), label_divisor, ignore_label)
    except PanopticFormatError as e:
        raise PanopticFormatError(f"{path}: {e}") from None


def write_kitti_step(path: str | Path, panoptic: np.ndarray, label_divisor: int = 1000) -> Path:
    return write_png(path, encode_kitti_step(panoptic, label_divisor))


# ----------------------------------------------------------------------------- VIPSeg

# panoVIPSeg_categories.json categories with "isthing": 1
VIPSEG_THING_CATEGORIES: tuple[int, ...] = (
    2,
    4,
    8,
    10,
    41,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    54,
    55,
    56,
    60,
    61,
    62,
    63,
    64,
    65,
    72,
    74,
    76,
    77,
    78,
    79,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
    91,
    92,
    95,
    96,
    97,
    99,
    100,
    101,
    102,
    106,
    107,
    108,
    109,
    114,
    115,
    116,
    117,
    118,
    122,
    123,
)
VIPSEG_NUM_CATEGORIES = 124
VIPSEG_VOID_VALUES: tuple[int, ...] = (0, 200)
# train id -> VIPSeg category id (things first, then stuff)
VIPSEG_TRAIN_TO_CATEGORY: tuple[int, ...] = VIPSEG_THING_CATEGORIES + tuple(
    c for c in range(VIPSEG_NUM_CATEGORIES) if c not in VIPSEG_THING_CATEGORIES
)
_VIPSEG_CAT_TO_TRAIN = np.argsort(np.array(VIPSEG_TRAIN_TO_CATEGORY))
_VIPSEG_CAT_IS_THING = np.isin(np.arange(VIPSEG_NUM_CATEGORIES), VIPSEG_THING_CATEGORIES)


def decode_vipseg(
    mask: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """VIPSeg panomask values [H,W] -> int64 [H,W] panoptic ids (``vipseg_r50`` train ids)."""
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise PanopticFormatError(
            f"VIPSeg panomasks are single-channel integer [H,W], got {mask.shape} {mask.dtype}"
        )
    v = mask.astype(np.int64)
    void = np.isin(v, VIPSEG_VOID_VALUES)
    region = v <= VIPSEG_NUM_CATEGORIES  # category + 1, no instance
    cat = np.where(region, v - 1, v // 100 - 1)
    inst = np.where(region, 0, v % 100 + 1)
    bad = ~void & ((cat < 0) | (cat >= VIPSEG_NUM_CATEGORIES))
    if bad.any():
        raise PanopticFormatError(
            f"VIPSeg values {np.unique(v[bad])[:10].tolist()} decode to categories "
            f"outside 0..{VIPSEG_NUM_CATEGORIES - 1}"
        )
    cat = np.where(void, 0, cat)
    bad = ~void & ~region & ~_VIPSEG_CAT_IS_THING[cat]
    if bad.any():
        raise PanopticFormatError(
            f"VIPSeg values {np.unique(v[bad])[:10].tolist()} encode instances of stuff "
            "categories"
        )
    if label_divisor <= 100:
        raise ValueError(
            f"VIPSeg instances go up to 100, label_divisor must be > 100, got {label_divisor}"
        )
    ids = _VIPSEG_CAT_TO_TRAIN[cat] * label_divisor + inst
    return np.where(void, ignore_label * label_divisor, ids)


def encode_vipseg(
    panoptic: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    """int [H, W] panoptic ids (``vipseg_r50`` train ids) -> uint16 [H, W] panomask values.

    Thing instance i >= 1 is stored as file instance i - 1 (at most 100 per class); thing
    instance 0 and stuff become the region value category + 1; stuff must have instance 0.
    """
    sem, inst = _split(panoptic, label_divisor)
    void = sem == ignore_label
    if (~void & (sem >= VIPSEG_NUM_CATEGORIES)).any():
        raise ValueError(
            f"VIPSeg train ids are 0..{VIPSEG_NUM_CATEGORIES - 1}, "
            f"got {np.unique(sem[~void]).tolist()[:10]}"
        )
    cat = np.asarray(VIPSEG_TRAIN_TO_CATEGORY)[np.where(void, 0, sem)]
    thing = _VIPSEG_CAT_IS_THING[cat] & ~void
    if (~thing & ~void & (inst != 0)).any():
        raise ValueError(
            "VIPSeg stores stuff without instances, but some stuff pixels have instance != 0"
        )
    if (thing & (inst > 100)).any():
        raise ValueError(
            f"VIPSeg stores at most 100 instances per class, got instance {int(inst[thing].max())}"
        )
    out = np.where(thing & (inst > 0), (cat + 1) * 100 + inst - 1, cat + 1)
    return np.where(void, 0, out).astype(np.uint16)


def read_vipseg(
    path: str | Path, label_divisor: int = 1000, ignore_label: int = 255
) -> np.ndarray:
    mask = read_png(path)
    if mask.ndim != 2:
        raise PanopticFormatError(
            f"{path}: VIPSeg panomasks are single-channel PNGs, got shape {mask.shape}"
        )
    try:
        return decode_vipseg(mask, label_divisor, ignore_label)
    except PanopticFormatError as e:
        raise PanopticFormatError(f"{path}: {e}") from None


def write_vipseg(
    path: str | Path, panoptic: np.ndarray, label_divisor: int = 1000, ignore_label: int = 255
) -> Path:
    return write_png(path, encode_vipseg(panoptic, label_divisor, ignore_label))


# ----------------------------------------------------------------- COCO panoptic (Cityscapes-VPS)


def rgb_to_segment_id(rgb: np.ndarray) -> np.ndarray:
    """COCO-panoptic colour uint8 [H, W, 3] -> int64 [H, W] id = R + 256 G + 256^2 B."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def segment_id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """int [H, W] segment ids (< 2^24) -> uint8 [H, W, 3] COCO-panoptic colour."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(
            f"COCO-panoptic segment ids must be in 0..2^24-1, got {ids.min()}..{ids.max()}"
        )
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


@dataclass
class TrackNumbering:
    """Per-video numbering of COCO thing segments: segment id -> instance 1, 2, ... in order of
    first appearance."""

    label_divisor: int = 1000
    _ids: dict[int, int] = field(default_factory=dict)
    _next: dict[int, int] = field(default_factory=dict)

    def instance(self, segment_id: int, category: int) -> int:
        if segment_id not in self._ids:
            n = self._next.get(category, 1)
            if n >= self.label_divisor:
                raise PanopticFormatError(
                    f"more than {self.label_divisor - 1} instances of class {category} "
                    "in one video; use a larger label_divisor"
                )
            self._ids[segment_id] = n
            self._next[category] = n + 1
        return self._ids[segment_id]


def decode_coco_panoptic(
    rgb: np.ndarray,
    segments_info: list[dict],
    things: set[int] | tuple[int, ...],
    numbering: TrackNumbering,
    label_divisor: int = 1000,
    ignore_label: int = 255,
) -> np.ndarray:
    """COCO-panoptic colour PNG + ``segments_info`` -> int64 [H, W] panoptic ids.

    Pixels with id 0 or an id missing from ``segments_info`` are void; crowd (``iscrowd``) and
    stuff segments get instance 0; thing segments get ``numbering``'s per-video instance.
    """
    seg = rgb_to_segment_id(rgb)
    listed = set()
    uniq, inv = np.unique(seg, return_inverse=True)
    values = np.full(uniq.size, ignore_label * label_divisor, dtype=np.int64)
    pos = {int(u): i for i, u in enumerate(uniq)}
    for s in segments_info:
        sid, cat = int(s["id"]), int(s["category_id"])
        listed.add(sid)
        if sid == 0 or sid not in pos:
            continue
        inst = 0
        if cat in things and not s.get("iscrowd", 0):
            inst = numbering.instance(sid, cat)
        values[pos[sid]] = cat * label_divisor + inst
    unlisted = [int(u) for u in uniq if u != 0 and int(u) not in listed]
    if unlisted:
        log.warning("segment ids %s are not in segments_info; treated as void", unlisted[:5])
    return values[inv.reshape(seg.shape)]


def encode_coco_panoptic(
    panoptic: np.ndarray,
    things: set[int] | tuple[int, ...],
    label_divisor: int = 1000,
    ignore_label: int = 255,
) -> tuple[np.ndarray, list[dict]]:
    """int [H, W] panoptic ids -> (uint8 [H, W, 3] colour PNG, ``segments_info``).

    Segment id = panoptic id + 1 (0 = void), so ids stay consistent across a video. Thing pixels
    with instance 0 are written as one ``iscrowd=1`` segment per class.
    """
    sem, inst = _split(panoptic, label_divisor)
    p = sem * label_divisor + inst
    ids = np.where(sem == ignore_label, 0, p + 1)
    info = []
    uniq, counts = np.unique(ids, return_counts=True)
    for u, c in zip(uniq.tolist(), counts.tolist()):
        if u == 0:
            continue
        cat, i = (u - 1) // label_divisor, (u - 1) % label_divisor
        info.append(
            {
                "id": int(u),
                "category_id": int(cat),
                "iscrowd": int(cat in things and i == 0),
                "area": int(c),
            }
        )
    return segment_id_to_rgb(ids), info


# ----------------------------------------------------------------------------- folders of frames


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
        things: thing classes (Cityscapes-VPS decoding needs them).
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
        rgb = read_png(ref.path)
        if rgb.ndim != 3:
            raise PanopticFormatError(
                f"{ref.path}: COCO-panoptic PNGs are RGB, got shape {rgb.shape}"
            )
        return decode_coco_panoptic(
            rgb, list(ref.segments_info), set(self.things), numbering or TrackNumbering(D), D, ign
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
            annotations = json.loads(json_file.read_text())["annotations"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise PanopticFormatError(
                f"{json_file}: not a COCO-panoptic json with 'annotations' "
                f"({type(e).__name__}: {e})"
            ) from None
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


__all__ = [
    "FORMATS",
    "FrameRef",
    "PanopticFolder",
    "PanopticFormatError",
    "TrackNumbering",
    "decode_coco_panoptic",
    "decode_kitti_step",
    "decode_vipseg",
    "encode_coco_panoptic",
    "encode_kitti_step",
    "encode_vipseg",
    "read_kitti_step",
    "read_png",
    "read_vipseg",
    "rgb_to_segment_id",
    "segment_id_to_rgb",
    "write_kitti_step",
    "write_panoptic",
    "write_png",
    "write_vipseg",
]
