"""COCO-panoptic video labels (VPSNet / Cityscapes-VPS format, metrics.md §3.1 and §4).

RGB PNG with segment id = R + 256 G + 256^2 B (0 void), plus a json whose ``annotations`` carry
``file_name`` and ``segments_info`` (``id``, ``category_id`` = train id, ``iscrowd``) and whose
``categories`` carry ``isthing``. Segment ids are consistent within a video, so thing segments
are numbered 1, 2, ... per class and video in order of first appearance; stuff and crowd get
instance 0; pixels with id 0 or an unlisted id are void.

Which categories are things (one rule for the dataset reader and for evaluation folders): the
``isthing`` flags of the json's ``categories``, as the official VPQ (``eval_vpq.py``) and the
Cityscapes-VPS json (``isthing`` = 1 for train ids 11..18) define them. Only a json without
``categories`` (a prediction json) falls back to the thing classes of the model's config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from vknet_core.panoptic_io.png import PanopticFormatError, split_ids

log = logging.getLogger(__name__)


def rgb_to_segment_id(rgb: np.ndarray) -> np.ndarray:
    """COCO-panoptic colour uint8 [H, W, 3] (R, G, B) -> int64 [H, W] id = R + 256 G + 256^2 B."""
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


def thing_categories(
    categories: Optional[Iterable[Mapping[str, Any]]],
    fallback: Iterable[int] = (),
    source: str = "",
) -> frozenset[int]:
    """The thing category ids: those whose ``isthing`` flag is set in the json's ``categories``;
    ``fallback`` (the config's thing train ids) only when the json has no categories.

    PanopticFormatError when neither says which categories are things.
    """
    if categories:
        try:
            return frozenset(int(c["id"]) for c in categories if int(c.get("isthing", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise PanopticFormatError(
                f"{source}: 'categories' entries need an integer 'id' and 'isthing' "
                f"({type(e).__name__}: {e})"
            ) from None
    things = frozenset(int(t) for t in fallback)
    if not things:
        raise PanopticFormatError(
            f"{source}: the json has no 'categories' with 'isthing' flags and no thing classes "
            "were given"
        )
    return things


@dataclass
class TrackNumbering:
    """Per-video numbering of COCO thing segments: segment id -> instance 1, 2, ... per class in
    order of first appearance."""

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

    @classmethod
    def of_video(
        cls,
        frames: Iterable[Sequence[Mapping[str, Any]]],
        things: Iterable[int],
        label_divisor: int = 1000,
    ) -> TrackNumbering:
        """Number a whole video up front (``segments_info`` per frame, in frame order), so that
        frames can then be decoded in any order with the same instance ids."""
        numbering, things = cls(label_divisor), frozenset(things)
        for segments in frames:
            for s in segments:
                if _is_track(s, things):
                    numbering.instance(int(s["id"]), int(s["category_id"]))
        return numbering


def _is_track(segment: Mapping[str, Any], things: frozenset[int]) -> bool:
    return int(segment["category_id"]) in things and not segment.get("iscrowd", 0)


def decode_coco_panoptic(
    rgb: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    things: Iterable[int],
    numbering: TrackNumbering,
    label_divisor: int = 1000,
    ignore_label: int = 255,
) -> np.ndarray:
    """COCO-panoptic colour PNG uint8 [H, W, 3] + ``segments_info`` -> int64 [H, W] panoptic ids.

    ``things``: the thing category ids (``thing_categories``). Pixels with id 0 or an id missing
    from ``segments_info`` are void; crowd (``iscrowd``) and stuff segments get instance 0; thing
    segments get ``numbering``'s per-video instance.
    """
    things = frozenset(things)
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
        inst = numbering.instance(sid, cat) if _is_track(s, things) else 0
        values[pos[sid]] = cat * label_divisor + inst
    unlisted = [int(u) for u in uniq if u != 0 and int(u) not in listed]
    if unlisted:
        log.warning("segment ids %s are not in segments_info; treated as void", unlisted[:5])
    return values[inv.reshape(seg.shape)]


def encode_coco_panoptic(
    panoptic: np.ndarray,
    things: Iterable[int],
    label_divisor: int = 1000,
    ignore_label: int = 255,
) -> tuple[np.ndarray, list[dict]]:
    """int [H, W] panoptic ids -> (uint8 [H, W, 3] colour PNG, ``segments_info``).

    Segment id = panoptic id + 1 (0 = void), so ids stay consistent across a video. Thing pixels
    with instance 0 are written as one ``iscrowd=1`` segment per class.
    """
    things = frozenset(things)
    sem, inst = split_ids(panoptic, label_divisor)
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
