"""torchvision backbones returning C2..C5 (strides 4, 8, 16, 32). B batch.

MobileNetV3-small: the small backbone of the ``tiny`` preset. ResNet (18/50/101): mmdet
"pytorch" style = torchvision's ResNet v1.5; stem + stage 1 frozen and BatchNorm statistics
frozen as in the official config (video_knet.md §2.2). Swin (T/B): torchvision's
Swin v1, whose block/merging layout equals the original Swin used by the official Swin configs,
plus the per-output LayerNorms ``norm0..norm3`` of the detection Swin, and with the official
shift rule (``OfficialShiftWindowAttention``). Weights load from a local file (torchvision key
names) -- nothing is downloaded.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.swin_transformer import (
    ShiftedWindowAttention,
    SwinTransformerBlock,
    shifted_window_attention,
)

from vknet_core.config import BackboneConfig

log = logging.getLogger(__name__)

RESNETS = {
    "resnet18": (torchvision.models.resnet18, (64, 128, 256, 512)),
    "resnet50": (torchvision.models.resnet50, (256, 512, 1024, 2048)),
    "resnet101": (torchvision.models.resnet101, (256, 512, 1024, 2048)),
}
MOBILENETS = {  # (builder, channels, last feature index of each stride 4/8/16/32)
    "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small, (16, 24, 48, 96), (1, 3, 8, 11)),
}
SWINS = {
    "swin_t": (torchvision.models.swin_t, (96, 192, 384, 768)),
    "swin_b": (torchvision.models.swin_b, (128, 256, 512, 1024)),
}


class _FrozenBNMixin(nn.Module):
    """``norm_eval``: BatchNorm layers stay in eval mode (frozen statistics) in ``train()``."""

    norm_eval: bool = False

    def train(self, mode: bool = True) -> _FrozenBNMixin:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


class ResNetBackbone(_FrozenBNMixin):
    """ResNet without avgpool/fc. Parameter names equal torchvision's (and the official keys)."""

    def __init__(self, name: str, frozen_stages: int = 1, norm_eval: bool = True):
        super().__init__()
        net = RESNETS[name][0](weights=None)
        self.out_channels: tuple[int, ...] = RESNETS[name][1]
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        frozen: list[nn.Module] = []
        if frozen_stages >= 0:
            frozen += [self.conv1, self.bn1]
        frozen += [getattr(self, f"layer{i}") for i in range(1, frozen_stages + 1)]
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def forward(self, image: Tensor) -> list[Tensor]:
        """image [B,3,H,W] -> [C2 [B,c2,H/4,W/4], C3 /8, C4 /16, C5 /32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class MobileNetBackbone(_FrozenBNMixin):
    """torchvision MobileNetV3 ``features`` cut at strides 4/8/16/32 (the ``tiny`` preset)."""

    def __init__(self, name: str, norm_eval: bool = False):
        super().__init__()
        self.norm_eval = norm_eval
        builder, self.out_channels, self.taps = MOBILENETS[name]
        self.features = builder(weights=None).features[: self.taps[-1] + 1]

    def forward(self, image: Tensor) -> list[Tensor]:
        """image [B,3,H,W] -> 4 maps [B,c_i,H/2^(i+2),W/2^(i+2)]."""
        outs, x = [], image
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


def shift_window_mask(pad_h: int, pad_w: int, window: int, shift: int) -> Tensor:
    """The official shifted-window attention mask: [nW, window², window²], 0 or -100.

    Coordinates are those of the rolled (by ``-shift``), padded [pad_h, pad_w] map. Each axis is
    cut into the regions ``[0, pad-window)``, ``[pad-window, pad-shift)``, ``[pad-shift, pad)``;
    tokens of one window that lie in different regions (wrapped around by the roll) get -100.
    """
    img = torch.zeros(pad_h, pad_w)
    cuts = ((0, -window), (-window, -shift), (-shift, None))
    for i, (h0, h1) in enumerate(cuts):
        for j, (w0, w1) in enumerate(cuts):
            img[h0:h1, w0:w1] = 3 * i + j
    img = img.view(pad_h // window, window, pad_w // window, window).permute(0, 2, 1, 3)
    ids = img.reshape(-1, window * window)  # [nW, window²] region id per token
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class OfficialShiftWindowAttention(ShiftedWindowAttention):
    """torchvision's window attention (same parameters and key names) with the official rule.

    torchvision sets the shift of an axis to 0 when the padded map is no larger than the window
    on it. The official ``SwinTransformerDIY`` (Swin-Transformer-Object-Detection) always rolls
    the shifted blocks by ``window_size // 2`` and applies its -100 mask, whatever the map size.
    That matters for any input side <= 224 px (C5 pads to one window); larger maps are unchanged.
    """

    def _attend(self, x: Tensor, bias: Tensor) -> Tensor:
        """torchvision's window attention with no pad or shift of its own: [B, H, W, C]."""
        return shifted_window_attention(
            x,
            self.qkv.weight,
            self.proj.weight,
            bias,
            self.window_size,
            self.num_heads,
            shift_size=[0, 0],
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            qkv_bias=self.qkv.bias,
            proj_bias=self.proj.bias,
            training=self.training,
        )

    def forward(self, x: Tensor) -> Tensor:
        """x [B, H, W, C] -> [B, H, W, C]."""
        bias = self.get_relative_position_bias()  # [1, heads, window², window²]
        shift = self.shift_size[0]
        if shift == 0:
            return self._attend(x, bias)
        window = self.window_size[0]
        B, H, W, _ = x.shape
        x = F.pad(x, (0, 0, 0, (-W) % window, 0, (-H) % window))  # zero pad bottom/right
        pad_h, pad_w = x.shape[1], x.shape[2]
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        mask = shift_window_mask(pad_h, pad_w, window, shift).to(bias)  # [nW, N, N]
        bias = (bias + mask[:, None]).repeat(B, 1, 1, 1)  # [B*nW, heads, N, N], window order
        # On the pre-shifted, padded map torchvision adds nothing: no pad, no shift of its own.
        x = self._attend(x, bias)
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return x[:, :H, :W, :].contiguous()


class SwinBackbone(nn.Module):
    """torchvision Swin ``features`` + LayerNorm on each stage output (``norm0..norm3``).

    The blocks use ``OfficialShiftWindowAttention`` (the official shift rule); parameter names
    are torchvision's.
    """

    def __init__(self, name: str):
        super().__init__()
        block = partial(SwinTransformerBlock, attn_layer=OfficialShiftWindowAttention)
        net = SWINS[name][0](weights=None, block=block)
        self.out_channels = SWINS[name][1]
        self.features = (
            net.features
        )  # [patch_embed, stage1, merge, stage2, merge, stage3, merge, stage4]
        for i, c in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(c))

    def forward(self, image: Tensor) -> list[Tensor]:
        """image [B,3,H,W] -> 4 maps [B,c_i,H/2^(i+2),W/2^(i+2)]."""
        outs = []
        x = self.features[0](image)  # [B, H/4, W/4, c0] (channels last)
        for i in range(4):
            if i > 0:
                x = self.features[2 * i](x)  # patch merging
            x = self.features[2 * i + 1](x)
            y = getattr(self, f"norm{i}")(x)
            outs.append(y.permute(0, 3, 1, 2).contiguous())
        return outs


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    if cfg.name in RESNETS:
        net: nn.Module = ResNetBackbone(cfg.name, cfg.frozen_stages, cfg.norm_eval)
    elif cfg.name in SWINS:
        net = SwinBackbone(cfg.name)
    elif cfg.name in MOBILENETS:
        net = MobileNetBackbone(cfg.name, cfg.norm_eval)
    else:
        known = sorted(RESNETS) + sorted(SWINS) + sorted(MOBILENETS)
        raise ValueError(f"unknown backbone {cfg.name!r}; expected one of {known}")
    if cfg.pretrained:
        load_pretrained(net, Path(cfg.pretrained))
    return net


def load_pretrained(net: nn.Module, path: Path) -> None:
    """Load local ImageNet weights with torchvision key names (``fc.*``/``head.*`` ignored)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights not found: {path} (expected a torchvision .pth)"
        )
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    sd = {k: v for k, v in sd.items() if not k.startswith(("fc.", "head.", "norm."))}
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("norm")]  # detection norms are new
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a matching torchvision backbone; missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    log.info("loaded backbone weights from %s", path)
