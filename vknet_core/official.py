"""Convert official Video K-Net checkpoints (mmdet key names) to ``VideoKNet`` state dicts.

Every official key is either mapped (one rule per module family, below) or dropped with a reason;
an official key that no rule knows is an error, and so is a model key left without a value.
Key families: ``parity/r50_kitti_step_state_dict.json`` and ``swinb_kitti_step_state_dict.json``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import Tensor

from vknet_core.config import VKNetConfig


def _rules(cfg: VKNetConfig) -> list[tuple[re.Pattern, Callable[[re.Match], str]]]:
    last = cfg.head.num_stages - 1
    is_swin = cfg.backbone.name.startswith("swin")
    link_suffix = "_track" if cfg.video.link_type == "update" else ""
    mh = r"roi_head\.mask_head\.(\d+)\."

    def stage(m: re.Match) -> str:
        return f"stages.{m.group(1)}."

    def link_target(m: re.Match) -> str:
        """Linking keys of the last stage -> ``linker``; other stages' copies are never used."""
        if int(m.group(1)) != last:
            raise _Drop(
                "linking block of a non-final stage: only the last stage receives the "
                "previous kernels (video_knet.md §4.1), so it is never used"
            )
        return "linker."

    def fusion_target(m: re.Match) -> str:
        if not cfg.video.fusion:
            raise _Drop("kernel-fusion block, but this preset has fusion off")
        if int(m.group(1)) != last:
            raise _Drop(
                "kernel-fusion block of a non-final stage: fusion runs only at the last "
                "stage (video_knet.md §4.2)"
            )
        return f"stages.{last}.fusion."

    rules: list[tuple[str, Callable[[re.Match], str]]] = []
    if is_swin:
        rules += [
            (r"backbone\.patch_embed\.proj\.(.*)", lambda m: f"backbone.features.0.0.{m[1]}"),
            (r"backbone\.patch_embed\.norm\.(.*)", lambda m: f"backbone.features.0.2.{m[1]}"),
            (
                r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.*)",
                lambda m: f"backbone.features.{2 * int(m[1]) + 1}.{m[2]}.mlp.0.{m[3]}",
            ),
            (
                r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.*)",
                lambda m: f"backbone.features.{2 * int(m[1]) + 1}.{m[2]}.mlp.3.{m[3]}",
            ),
            (
                r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.*)",
                lambda m: f"backbone.features.{2 * int(m[1]) + 1}.{m[2]}.{m[3]}",
            ),
            (
                r"backbone\.layers\.(\d+)\.downsample\.(.*)",
                lambda m: f"backbone.features.{2 * int(m[1]) + 2}.{m[2]}",
            ),
            (r"backbone\.(norm\d\..*)", lambda m: f"backbone.{m[1]}"),
        ]
    else:
        rules += [(r"backbone\.(.*)", lambda m: f"backbone.{m[1]}")]
    rules += [
        (
            r"neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(.*)",
            lambda m: f"fpn.{m[1]}.{m[2]}.{m[3]}",
        ),
        (
            r"rpn_head\.localization_fpn\.convs_all_levels\.(\d+)\.(conv\d)\.(.*)",
            lambda m: f"sem_fpn.levels.{m[1]}.{m[2]}.{m[3]}",
        ),
        (r"rpn_head\.localization_fpn\.conv_pred\.(.*)", lambda m: f"sem_fpn.conv_pred.{m[1]}"),
        (r"rpn_head\.localization_fpn\.aux_convs\.0\.(.*)", lambda m: f"sem_fpn.aux_conv.{m[1]}"),
        (r"rpn_head\.loc_convs\.0\.(.*)", lambda m: f"kernel_head.loc_conv.{m[1]}"),
        (r"rpn_head\.seg_convs\.0\.(.*)", lambda m: f"kernel_head.seg_conv.{m[1]}"),
        (r"rpn_head\.(init_kernels|conv_seg)\.(.*)", lambda m: f"kernel_head.{m[1]}.{m[2]}"),
        # linking (R-50: attention_previous/link_ffn; Swin "update": *_track + refresh updator)
        (
            mh + r"attention_previous_update_track\.(.*)",
            lambda m: link_target(m) + f"updator.{m[2]}",
        ),
        (
            mh + rf"attention_previous{link_suffix}\.attn\.(.*)",
            lambda m: link_target(m) + f"attention.{m[2]}",
        ),
        (
            mh + rf"attention_previous_norm{link_suffix}\.(.*)",
            lambda m: link_target(m) + f"attention_norm.{m[2]}",
        ),
        (
            mh + rf"link_ffn{link_suffix}\.layers\.0\.0\.(.*)",
            lambda m: link_target(m) + f"ffn.fc1.{m[2]}",
        ),
        (
            mh + rf"link_ffn{link_suffix}\.layers\.1\.(.*)",
            lambda m: link_target(m) + f"ffn.fc2.{m[2]}",
        ),
        (mh + rf"link_ffn_norm{link_suffix}\.(.*)", lambda m: link_target(m) + f"ffn_norm.{m[2]}"),
        # kernel fusion (Swin: *_link)
        (
            mh + r"attention_previous_update_link\.(.*)",
            lambda m: fusion_target(m) + f"updator.{m[2]}",
        ),
        (
            mh + r"attention_previous_link\.attn\.(.*)",
            lambda m: fusion_target(m) + f"attention.{m[2]}",
        ),
        (
            mh + r"attention_previous_norm_link\.(.*)",
            lambda m: fusion_target(m) + f"attention_norm.{m[2]}",
        ),
        (
            mh + r"link_ffn_link\.layers\.0\.0\.(.*)",
            lambda m: fusion_target(m) + f"ffn.fc1.{m[2]}",
        ),
        (mh + r"link_ffn_link\.layers\.1\.(.*)", lambda m: fusion_target(m) + f"ffn.fc2.{m[2]}"),
        (mh + r"link_ffn_norm_link\.(.*)", lambda m: fusion_target(m) + f"ffn_norm.{m[2]}"),
        # the kernel-update stage itself
        (mh + r"attention\.attn\.(.*)", lambda m: stage(m) + f"attention.{m[2]}"),
        (mh + r"ffn\.layers\.0\.0\.(.*)", lambda m: stage(m) + f"ffn.fc1.{m[2]}"),
        (mh + r"ffn\.layers\.1\.(.*)", lambda m: stage(m) + f"ffn.fc2.{m[2]}"),
        (mh + r"feat_transform\.conv\.(.*)", lambda m: stage(m) + f"feat_transform.{m[2]}"),
        (
            mh + r"((?:kernel_update_conv|attention_norm|ffn_norm|cls_fcs|fc_cls|mask_fcs|fc_mask)"
            r"\..*)",
            lambda m: stage(m) + m[2],
        ),
        # embedding head
        (r"embed_fcs\.(.*)", lambda m: f"embed_head.embed_fcs.{m[1]}"),
        (r"fc_embed\.(.*)", lambda m: f"embed_head.fc_embed.{m[1]}"),
        (r"track_head\.fcs\.(\d+)\.(.*)", lambda m: f"embed_head.track_fcs.{m[1]}.{m[2]}"),
        (r"track_head\.fc_embed\.(.*)", lambda m: f"embed_head.track_embed.{m[1]}"),
    ]
    return [(re.compile(p + r"$"), f) for p, f in rules]


class _Drop(Exception):
    """Raised by a rule for an official key that is deliberately not used."""


class ConversionError(ValueError):
    pass


def convert_state_dict(
    official: dict[str, Tensor], cfg: VKNetConfig, expected: dict[str, Tensor]
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Map an official state dict onto our key names.

    Args:
        official: official (mmdet) key -> tensor; a leading ``state_dict`` wrapper is not accepted
            here (``convert_official.py`` unwraps it).
        cfg: the preset the checkpoint belongs to.
        expected: our model's state dict (names and shapes to fill).
    Returns:
        (our state dict, {dropped official key: reason}).
    Raises:
        ConversionError listing unknown official keys, shape mismatches and unfilled model keys.
    """
    rules = _rules(cfg)
    ours: dict[str, Tensor] = {}
    dropped: dict[str, str] = {}
    unknown, bad_shape = [], []
    for key, value in official.items():
        target = None
        for pattern, fn in rules:
            m = pattern.match(key)
            if m:
                try:
                    target = fn(m)
                except _Drop as d:
                    dropped[key] = str(d)
                break
        if key in dropped:
            continue
        if target is None or target not in expected:
            unknown.append(key if target is None else f"{key} -> {target} (no such model key)")
            continue
        want = expected[target].shape
        if value.shape != want:
            if value.numel() == want.numel() and "relative_position_index" in key:
                value = value.reshape(want)  # torchvision stores the Swin index flattened
            else:
                bad_shape.append(f"{key}: {tuple(value.shape)} vs model {tuple(want)}")
                continue
        ours[target] = value.to(expected[target].dtype)
    missing = sorted(set(expected) - set(ours))
    if unknown or bad_shape or missing:
        lines = []
        if unknown:
            lines.append(f"{len(unknown)} unknown official keys: {unknown[:10]}")
        if bad_shape:
            lines.append(f"{len(bad_shape)} shape mismatches: {bad_shape[:10]}")
        if missing:
            lines.append(f"{len(missing)} model keys without a value: {missing[:10]}")
        raise ConversionError(f"cannot convert to preset {cfg.name!r}: " + "; ".join(lines))
    return ours, dropped
