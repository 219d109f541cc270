"""Fold eval-mode BatchNorm into the convolution before it (inference only).

A frozen BatchNorm2d after a Conv2d is an affine map per output channel, so
``bn(conv(x)) == conv'(x)`` with ``w' = w * g / sqrt(var + eps)`` and
``b' = (b - mean) * g / sqrt(var + eps) + beta`` (``torch.nn.utils.fusion.fuse_conv_bn_eval``).
Eager PyTorch runs the BatchNorm as a separate pass over every feature map; ONNX Runtime and
TensorRT fold it themselves. The pairs folded are the ones the torchvision backbones use:
consecutive ``Conv2d, BatchNorm2d`` in an ``nn.Sequential`` (MobileNetV3, ResNet downsample) and
sibling attributes ``convN`` / ``bnN`` (ResNet stem and blocks, whose ``forward`` calls
``bnN(convN(x))``). The BatchNorm is replaced by ``nn.Identity``.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.num_features == conv.out_channels
    )


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace``) with every
    Conv2d -> BatchNorm2d pair folded; returns (model, number of BatchNorms folded).

    Only for inference: the folded model has no BatchNorm statistics left to train.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    folded = 0
    for parent in list(model.modules()):
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            for a, b in zip(names, names[1:], strict=False):
                if _foldable(children[a], children[b]):
                    setattr(parent, a, fuse_conv_bn_eval(children[a], children[b]))
                    setattr(parent, b, nn.Identity())
                    folded += 1
            continue
        for name, bn in children.items():
            if not name.startswith("bn"):
                continue
            conv_name = "conv" + name[2:]
            conv = children.get(conv_name)
            if conv is not None and _foldable(conv, bn):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, name, nn.Identity())
                folded += 1
    return model, folded
