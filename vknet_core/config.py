"""Frozen configuration dataclasses and the named presets.

A preset is a plain function returning a ``VKNetConfig``; variants use ``dataclasses.replace``.
The config travels inside every checkpoint (``vknet_core.checkpoint``), so a file alone rebuilds
its model. Label spaces: the dataset's *train ids* (e.g. KITTI-STEP 0..18, void 255) are what
enters and leaves ``vknet_core``; the network internally orders classes "things first"
(``LabelConfig.model_to_train_id``), as the official Video K-Net does (video_knet.md §8.1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

IMAGENET_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class LabelConfig:
    """Dataset label space. ``class_names[i]`` is the name of train id ``i``."""

    dataset: str = "kitti_step"
    class_names: tuple[str, ...] = CITYSCAPES_CLASSES
    thing_train_ids: tuple[int, ...] = (11, 13)  # person, car: the tracked classes
    ignore_label: int = 255
    label_divisor: int = 1000

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_things(self) -> int:
        return len(self.thing_train_ids)

    @property
    def num_stuff(self) -> int:
        return self.num_classes - self.num_things

    @property
    def model_to_train_id(self) -> tuple[int, ...]:
        """Model label m (things first, then stuff, each ascending) -> dataset train id."""
        things = tuple(sorted(self.thing_train_ids))
        stuff = tuple(i for i in range(self.num_classes) if i not in things)
        return things + stuff

    @property
    def train_to_model_id(self) -> dict[int, int]:
        return {t: m for m, t in enumerate(self.model_to_train_id)}


@dataclass(frozen=True)
class BackboneConfig:
    """torchvision backbone returning C2..C5 (strides 4, 8, 16, 32)."""

    name: str = "resnet50"  # resnet18|resnet50|resnet101|swin_t|swin_b|mobilenet_v3_small
    frozen_stages: int = 1  # ResNet: stem + layer1 frozen (official frozen_stages=1)
    norm_eval: bool = True  # BatchNorm statistics frozen (official norm_eval=True)
    pretrained: str = ""  # optional local path to ImageNet weights (torchvision key names)


@dataclass(frozen=True)
class NeckConfig:
    """FPN (P2..P5) + semantic-FPN wrapper to stride 8 (video_knet.md §2.3-2.4)."""

    channels: int = 256  # C: FPN, kernel and feature width
    num_groups: int = 32  # GroupNorm groups in the semantic-FPN and kernel-head convs


@dataclass(frozen=True)
class HeadConfig:
    """Kernel head + iterative kernel update stages (video_knet.md §2.5-§3)."""

    num_thing_kernels: int = 100  # Q
    num_stages: int = 3
    num_heads: int = 8
    ffn_channels: int = 2048
    mask_upsample_stride: int = 4  # stride-8 masks x4 -> stride 2 for losses and the merge


@dataclass(frozen=True)
class VideoConfig:
    """The video parts: kernel linking, kernel fusion and the association embedding head."""

    link_type: str = "ffn"  # "ffn" (R-50 configs, §4.1) or "update" (Swin configs, §4.3)
    fusion: bool = False  # kernel fusion at the start of the last stage (Swin configs, §4.2)
    embed_channels: int = 256  # E


@dataclass(frozen=True)
class VKNetConfig:
    name: str = "kitti_step_r50"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    size_divisor: int = 32  # input is padded bottom/right to a multiple of this

    @property
    def num_kernels(self) -> int:
        """N = thing kernels + stuff kernels."""
        return self.head.num_thing_kernels + self.labels.num_stuff

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> VKNetConfig:
        def tup(x: Any) -> Any:
            return tuple(x) if isinstance(x, list) else x

        return VKNetConfig(
            name=d["name"],
            backbone=BackboneConfig(**d["backbone"]),
            neck=NeckConfig(**d["neck"]),
            head=HeadConfig(**d["head"]),
            video=VideoConfig(**d["video"]),
            labels=LabelConfig(**{k: tup(v) for k, v in d["labels"].items()}),
            pixel_mean=tup(d["pixel_mean"]),
            pixel_std=tup(d["pixel_std"]),
            size_divisor=d["size_divisor"],
        )


# ----------------------------------------------------------------------------- presets


def kitti_step_r50() -> VKNetConfig:
    """Exactly the official R-50 KITTI-STEP model: linking on (ffn), fusion off."""
    return VKNetConfig(name="kitti_step_r50")


def kitti_step_swinb() -> VKNetConfig:
    """The official Swin-B KITTI-STEP "joint_update" model: update-linking + kernel fusion."""
    return VKNetConfig(
        name="kitti_step_swinb",
        backbone=BackboneConfig(name="swin_b", frozen_stages=-1),
        video=VideoConfig(link_type="update", fusion=True),
    )


def cityscapes_vps_r50() -> VKNetConfig:
    """Cityscapes-VPS: the same 19 classes, 8 of them things (person .. bicycle)."""
    return VKNetConfig(
        name="cityscapes_vps_r50",
        labels=LabelConfig(dataset="cityscapes_vps", thing_train_ids=tuple(range(11, 19))),
    )


VIPSEG_NUM_CLASSES = 124
VIPSEG_NUM_THINGS = 58  # VIPSeg train ids 0..57 are things, 58..123 stuff


def vipseg_r50() -> VKNetConfig:
    """VIPSeg: 124 classes (58 things first, 66 stuff); names are the dataset's category ids."""
    names = tuple(f"vipseg_{i}" for i in range(VIPSEG_NUM_CLASSES))
    return VKNetConfig(
        name="vipseg_r50",
        labels=LabelConfig(
            dataset="vipseg", class_names=names, thing_train_ids=tuple(range(VIPSEG_NUM_THINGS))
        ),
    )


def tiny() -> VKNetConfig:
    """Small model for CPU tests and the demo: MobileNetV3-small, 64 channels, 20 thing kernels."""
    return VKNetConfig(
        name="tiny",
        backbone=BackboneConfig(name="mobilenet_v3_small", frozen_stages=-1, norm_eval=False),
        neck=NeckConfig(channels=64, num_groups=8),
        head=HeadConfig(num_thing_kernels=20, num_stages=3, num_heads=4, ffn_channels=256),
        video=VideoConfig(link_type="ffn", fusion=False, embed_channels=64),
    )


PRESETS: dict[str, Callable[[], VKNetConfig]] = {
    "kitti_step_r50": kitti_step_r50,
    "kitti_step_swinb": kitti_step_swinb,
    "cityscapes_vps_r50": cityscapes_vps_r50,
    "vipseg_r50": vipseg_r50,
    "tiny": tiny,
}


def get_preset(name: str) -> VKNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


__all__ = [
    "BackboneConfig",
    "HeadConfig",
    "LabelConfig",
    "NeckConfig",
    "VideoConfig",
    "VKNetConfig",
    "PRESETS",
    "get_preset",
    "replace",
    "CITYSCAPES_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
