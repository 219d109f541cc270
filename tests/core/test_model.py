"""Model invariants (tiny preset on CPU) and checkpoint / conversion behaviour."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import vknet_core
from tests.shared_data import require_shared
from vknet_core.config import VideoConfig, get_preset
from vknet_core.model.vknet import FrameStep


def _model(fusion: bool = False, link_type: str = "ffn") -> vknet_core.VideoKNet:
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    cfg = replace(cfg, video=VideoConfig(link_type=link_type, fusion=fusion, embed_channels=64))
    return vknet_core.build_model(cfg).eval()


@pytest.mark.parametrize("fusion,link_type", [(False, "ffn"), (True, "update")])
@torch.no_grad()
def test_shapes_finite_and_deterministic(fusion, link_type):
    model = _model(fusion, link_type)
    cfg = model.cfg
    x = torch.randn(1, 3, 64, 96)
    a = model(x, *model.initial_state(1))
    b = model(x, *model.initial_state(1))
    N, C, K = cfg.num_kernels, cfg.neck.channels, cfg.labels.num_classes
    Q, E = cfg.head.num_thing_kernels, cfg.video.embed_channels
    shapes = [(1, N, K), (1, N, 8, 12), (1, N, C), (1, Q, E), (1, K, 8, 12)]
    assert [tuple(o.shape) for o in a] == shapes
    for name, o1, o2 in zip(a._fields, a, b):
        assert torch.isfinite(o1).all(), name
        assert torch.equal(o1, o2), f"{name} not deterministic"


@pytest.mark.parametrize("fusion,link_type", [(False, "ffn"), (True, "update")])
@torch.no_grad()
def test_batch_of_two_equals_two_singles(fusion, link_type):
    model = _model(fusion, link_type)
    x = torch.randn(2, 3, 64, 96)
    first = model(x, *model.initial_state(2))
    prev = first.cur_kernels.flip(0)  # mixed state: one frame linked, one first frame
    has_prev = torch.tensor([1.0, 0.0])
    both = model(x, prev, has_prev)
    for i in range(2):
        single = model(x[i : i + 1], prev[i : i + 1], has_prev[i : i + 1])
        for name, o_b, o_s in zip(both._fields, both, single):
            torch.testing.assert_close(o_b[i : i + 1], o_s, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("fusion,link_type", [(False, "ffn"), (True, "update")])
@torch.no_grad()
def test_has_prev_zero_is_the_first_frame_path(fusion, link_type):
    """has_prev=0 ignores prev_kernels entirely; has_prev=1 changes the embedding (and, with
    fusion, the segmentation); linking alone never changes masks or classes."""
    model = _model(fusion, link_type)
    x = torch.randn(1, 3, 64, 96)
    zero = model(x, *model.initial_state(1))
    junk = torch.randn_like(zero.cur_kernels) * 10
    ignored = model(x, junk, torch.zeros(1))
    for name, a, b in zip(zero._fields, zero, ignored):
        assert torch.equal(a, b), name
    linked = model(x, zero.cur_kernels, torch.ones(1))
    assert not torch.allclose(linked.track_embed, zero.track_embed)
    if not fusion:
        assert torch.equal(linked.mask_logits, zero.mask_logits)
        assert torch.equal(linked.cls_prob, zero.cls_prob)
    else:
        assert not torch.allclose(linked.mask_logits, zero.mask_logits)


@torch.no_grad()
def test_frame_step_normalises_uint8_inside():
    model = _model()
    img = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8)
    mean = torch.tensor(model.cfg.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.cfg.pixel_std).view(1, 3, 1, 1)
    x = (img.permute(0, 3, 1, 2).float() - mean) / std
    a = FrameStep(model)(img, *model.initial_state(1))
    b = model(x, *model.initial_state(1))
    for name, o1, o2 in zip(a._fields, a, b):
        assert torch.equal(o1, o2), name


def test_train_mode_gradients_flow_to_all_used_parameters():
    model = _model(fusion=True, link_type="update").train()
    x = torch.randn(1, 3, 64, 96)
    ref = model.forward_train(x, *model.initial_state(1))
    key = model.forward_train(x, ref.frame.cur_kernels, torch.ones(1))
    loss = sum(o.float().mean() for o in key.frame) + sum(c.mean() for c in key.stage_cls_logits)
    loss = loss + key.rpn_mask_logits.mean() + sum(m.mean() for m in key.stage_mask_logits)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_checkpoint_round_trip(tmp_path):
    model = _model(fusion=True, link_type="update")
    path = vknet_core.save_checkpoint(model, tmp_path / "m.pt", extra={"note": "x"})
    loaded = vknet_core.load_checkpoint(path)
    assert loaded.cfg == model.cfg and not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        vknet_core.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable vknet checkpoint"):
        vknet_core.load_checkpoint(bad)
    torch.save({"state_dict": {}}, tmp_path / "official.pt")
    with pytest.raises(ValueError, match="convert with export/convert_official.py"):
        vknet_core.load_checkpoint(tmp_path / "official.pt")


def test_presets():
    for name in ("kitti_step_r50", "kitti_step_swinb", "cityscapes_vps_r50", "vipseg_r50", "tiny"):
        cfg = get_preset(name)
        assert cfg.name == name
        assert len(set(cfg.labels.model_to_train_id)) == cfg.labels.num_classes
    r50 = get_preset("kitti_step_r50")
    assert (r50.video.link_type, r50.video.fusion, r50.num_kernels) == ("ffn", False, 117)
    assert r50.labels.model_to_train_id[:3] == (11, 13, 0)
    assert get_preset("kitti_step_swinb").video.fusion
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        get_preset("nope")


def test_swinb_official_keys_all_convert():
    """Every key of the official Swin-B (fusion) checkpoint is consumed or dropped, with reason."""
    from vknet_core.official import convert_state_dict

    spec = require_shared("parity/swinb_kitti_step_state_dict.json")
    entries = json.loads(spec.read_text())["state_dict"]
    official = {
        e["name"]: torch.zeros(e["shape"], dtype=getattr(torch, e["dtype"])) for e in entries
    }
    model = vknet_core.build_model("kitti_step_swinb")
    ours, dropped = convert_state_dict(official, model.cfg, model.state_dict())
    model.load_state_dict(ours, strict=True)
    assert len(ours) + len(dropped) == len(official)
    assert all("non-final stage" in why for why in dropped.values())
    assert set(ours) == set(model.state_dict())


def test_conversion_fails_loudly_on_unknown_keys():
    from vknet_core.official import ConversionError, convert_state_dict

    model = vknet_core.build_model("tiny")
    sd = {
        "backbone.features.0.0.weight": torch.zeros(1),
        "roi_head.mystery.weight": torch.zeros(1),
    }
    with pytest.raises(ConversionError, match="unknown official keys"):
        convert_state_dict(sd, model.cfg, model.state_dict())


def test_backbone_frozen_stages_norm_eval_and_local_weights(tmp_path):
    import torchvision

    from vknet_core.config import BackboneConfig
    from vknet_core.model.backbone import build_backbone

    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    net = build_backbone(BackboneConfig(name="resnet18", pretrained=str(tmp_path / "r18.pth")))
    assert torch.equal(net.layer3[0].conv1.weight, tv.layer3[0].conv1.weight)
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert not net.conv1.weight.requires_grad and net.layer2[0].conv1.weight.requires_grad
    net.train()
    assert not net.bn1.training and not net.layer4[0].bn1.training and net.layer4.training
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        build_backbone(BackboneConfig(name="resnet18", pretrained=str(tmp_path / "nope.pth")))
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_backbone(BackboneConfig(name="vgg"))
