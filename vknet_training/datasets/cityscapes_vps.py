"""Cityscapes-VPS reader, VPSNet format (video_knet.md §8.2, metrics.md §4).

Layout (mcahny/vps ``prepare_data``)::

    root/panoptic_gt_{split}_city_vps.json      COCO-panoptic json: images, annotations
                                                (image_id, file_name, segments_info), categories
    root/{split}/img/{vid:04d}_{fid:04d}_{city}_{a}_{b}_{newImg8bit|leftImg8bit}.png
    root/{split}/panoptic_video/<annotation file_name>.png   RGB, id = R + 256 G + 256^2 B

``image_id`` is the file name up to the last two ``_`` fields; its first 4 characters are the
video id (the ``seq`` key). Segment ids (colours) are consistent within a video, so a thing
segment is one track: the reader numbers thing segments 1, 2, ... per video in order of first
appearance, per class, and returns ``train_id * 1000 + that number``; stuff and crowd segments
get instance 0, unlabelled pixels (id 0 or not listed) are void. ``category_id`` is the train id
(0..18); the things are the categories flagged ``isthing`` in the json (11..18). Decoding is
``vknet_core.panoptic_io.coco_panoptic``'s, the same as evaluation folders use. Only the
annotated frames (every 5th) are frames of a sequence.
The release ships this json and ``panoptic_video/`` for ``val``; for ``train`` create them with
mcahny/vps ``prepare_data/create_panoptic_video_labels.py --mode train``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vknet_core.panoptic_io.coco_panoptic import (
    TrackNumbering,
    decode_coco_panoptic,
    rgb_to_segment_id,
    thing_categories,
)
from vknet_training.datasets.base import (
    IGNORE_LABEL,
    LABEL_DIVISOR,
    DatasetFormatError,
    VideoReader,
    check_same_size,
    read_rgb,
    read_rgb_png_u8,
)


class CityscapesVPSVideo(VideoReader):
    """Annotated frames of one Cityscapes-VPS split; ``seq`` is the integer video id."""

    def __init__(self, root: str | Path, split: str = "val"):
        self.root = Path(root)
        self.split = split
        json_path = self.root / f"panoptic_gt_{split}_city_vps.json"
        if not json_path.is_file():
            raise DatasetFormatError(
                f"Cityscapes-VPS annotation file not found: {json_path} (expected "
                f"root/panoptic_gt_{{split}}_city_vps.json beside root/{split}/img and "
                f"root/{split}/panoptic_video)"
            )
        try:
            data = json.loads(json_path.read_text())
            images = {im["id"]: im for im in data["images"]}
            annotations = data["annotations"]
            categories = {int(c["id"]): c for c in data["categories"]}
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetFormatError(
                f"{json_path}: not a COCO-panoptic json with 'images', 'annotations' and "
                f"'categories' ({type(e).__name__}: {e})"
            ) from None
        if not annotations:
            raise DatasetFormatError(f"{json_path}: no annotations (empty split {split!r})")
        self.json_path = json_path
        self.categories = categories
        self.things = thing_categories(data["categories"], source=str(json_path))
        self._frames: dict[int, list[dict[str, Any]]] = {}
        for ann in annotations:
            image_id = str(ann["image_id"])
            if image_id not in images:
                raise DatasetFormatError(
                    f"{json_path}: annotation {ann.get('file_name')!r} names image_id "
                    f"{image_id!r} that is not listed under 'images'"
                )
            try:
                vid = int(image_id[:4])
            except ValueError:
                raise DatasetFormatError(
                    f"{json_path}: image_id {image_id!r} does not start with a 4-digit video id"
                ) from None
            self._frames.setdefault(vid, []).append(
                {
                    "image_id": image_id,
                    "image_file": images[image_id]["file_name"],
                    "label_file": ann["file_name"],
                    "segments": ann["segments_info"],
                }
            )
        self._frames = {
            v: sorted(fs, key=lambda f: f["image_id"]) for v, fs in sorted(self._frames.items())
        }
        for frames in self._frames.values():
            for fr in frames:
                for s in fr["segments"]:
                    self._check_category(s)
        # per video: segment id of a non-crowd thing -> track number 1, 2, ... per class, so
        # any frame decodes with the ids of the whole video
        try:
            self._track: dict[int, TrackNumbering] = {
                vid: TrackNumbering.of_video(
                    (f["segments"] for f in frames), self.things, LABEL_DIVISOR
                )
                for vid, frames in self._frames.items()
            }
        except DatasetFormatError as e:
            raise DatasetFormatError(f"{json_path}: {e}") from None

    def _check_category(self, segment: dict[str, Any]) -> None:
        cat = int(segment["category_id"])
        if cat not in self.categories:
            raise DatasetFormatError(
                f"{self.json_path}: segment {segment.get('id')} has category_id {cat}, not in "
                f"'categories' {sorted(self.categories)}"
            )

    def sequences(self) -> list[int]:
        return list(self._frames)

    def num_frames(self, seq: int) -> int:
        if seq not in self._frames:
            raise KeyError(f"video {seq} not in {self.json_path}; available: {list(self._frames)}")
        return len(self._frames[seq])

    def frame_name(self, seq: int, idx: int) -> str:
        self._check_index(seq, idx)
        return self._frames[seq][idx]["image_id"]

    def frame_paths(self, seq: int, idx: int) -> tuple[Path, Path]:
        self._check_index(seq, idx)
        fr = self._frames[seq][idx]
        return (
            self.root / self.split / "img" / fr["image_file"],
            self.root / self.split / "panoptic_video" / fr["label_file"],
        )

    def read_frame(self, seq: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, lab_path = self.frame_paths(seq, idx)
        image = read_rgb(img_path)
        rgb = read_rgb_png_u8(lab_path, "Cityscapes-VPS panoptic")
        check_same_size(image, rgb, img_path, lab_path)
        panoptic = decode_coco_panoptic(
            rgb,
            self._frames[seq][idx]["segments"],
            self.things,
            self._track[seq],
            LABEL_DIVISOR,
            IGNORE_LABEL,
        )
        return image, panoptic


__all__ = ["CityscapesVPSVideo", "rgb_to_segment_id"]
