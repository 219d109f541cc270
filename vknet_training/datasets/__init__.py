"""Video panoptic dataset readers and the key/reference pair dataset used for training.

Readers return frames as ``(rgb uint8 [H, W, 3], panoptic int64 [H, W])`` with
``panoptic = semantic_train_id * 1000 + instance`` (void 255000); see ``base.py``.
"""

from pathlib import Path

from vknet_training.datasets.base import DatasetFormatError, VideoReader
from vknet_training.datasets.cityscapes_vps import CityscapesVPSVideo
from vknet_training.datasets.kitti_step import KittiStepVideo
from vknet_training.datasets.pairs import PairDataset, build_targets, collate_pairs
from vknet_training.datasets.vipseg import VIPSegVideo

READERS = {
    "kitti_step": KittiStepVideo,
    "cityscapes_vps": CityscapesVPSVideo,
    "vipseg": VIPSegVideo,
}


def build_reader(dataset: str, root: str | Path, split: str) -> VideoReader:
    """The reader for ``cfg.labels.dataset`` (``kitti_step``, ``cityscapes_vps``, ``vipseg``)."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(READERS)}")
    return READERS[dataset](root, split)


__all__ = [
    "CityscapesVPSVideo",
    "DatasetFormatError",
    "KittiStepVideo",
    "PairDataset",
    "READERS",
    "VIPSegVideo",
    "VideoReader",
    "build_reader",
    "build_targets",
    "collate_pairs",
]
