"""Panoptic label files <-> panoptic id arrays (``semantic * label_divisor + instance``).

One module per concept:

* ``png``: the image reader/writer of the project and ``PanopticFormatError``;
* ``kitti_step``: KITTI-STEP RGB PNGs (R = semantic, G * 256 + B = instance);
* ``vipseg``: VIPSeg panomasks and the VIPSeg category table;
* ``coco_panoptic``: COCO-panoptic video (Cityscapes-VPS) PNG + json, and the thing rule;
* ``folder``: ``PanopticFolder``, folders of label files grouped into sequences.

Everything is re-exported here: ``from vknet_core.panoptic_io import PanopticFolder``.
"""

from vknet_core.panoptic_io.coco_panoptic import (
    TrackNumbering,
    decode_coco_panoptic,
    encode_coco_panoptic,
    rgb_to_segment_id,
    segment_id_to_rgb,
    thing_categories,
)
from vknet_core.panoptic_io.folder import FORMATS, FrameRef, PanopticFolder, write_panoptic
from vknet_core.panoptic_io.kitti_step import (
    decode_kitti_step,
    encode_kitti_step,
    read_kitti_step,
    write_kitti_step,
)
from vknet_core.panoptic_io.png import (
    PanopticFormatError,
    read_image,
    read_png,
    read_rgb,
    read_rgb_png_u8,
    read_single_channel_png,
    split_ids,
    write_png,
)
from vknet_core.panoptic_io.vipseg import (
    CATEGORY_TO_TRAIN_ID,
    VIPSEG_NUM_CATEGORIES,
    VIPSEG_THING_CATEGORIES,
    VIPSEG_TRAIN_TO_CATEGORY,
    VIPSEG_VOID_VALUES,
    decode_vipseg,
    encode_vipseg,
    read_vipseg,
    write_vipseg,
)

__all__ = [
    "CATEGORY_TO_TRAIN_ID",
    "FORMATS",
    "FrameRef",
    "PanopticFolder",
    "PanopticFormatError",
    "TrackNumbering",
    "VIPSEG_NUM_CATEGORIES",
    "VIPSEG_THING_CATEGORIES",
    "VIPSEG_TRAIN_TO_CATEGORY",
    "VIPSEG_VOID_VALUES",
    "decode_coco_panoptic",
    "decode_kitti_step",
    "decode_vipseg",
    "encode_coco_panoptic",
    "encode_kitti_step",
    "encode_vipseg",
    "read_image",
    "read_kitti_step",
    "read_png",
    "read_rgb",
    "read_rgb_png_u8",
    "read_single_channel_png",
    "read_vipseg",
    "rgb_to_segment_id",
    "segment_id_to_rgb",
    "split_ids",
    "thing_categories",
    "write_kitti_step",
    "write_panoptic",
    "write_png",
    "write_vipseg",
]
