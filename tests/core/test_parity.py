"""Our model *is* Video K-Net: recipe weights, converted through export/convert_official.py,
reproduce the official arrays in ``shared/parity/r50_128x256.npz`` stage by stage and end to end.

Each piece is fed the official inputs (parity README: hard-mask flips near 0 make end-to-end-only
comparisons meaningless for the later stages). Tolerance: max|ours-ref| <= 1e-4 * max|ref| + 1e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.shared_data import SHARED, import_shared, require_shared

RTOL = 1e-4


@pytest.fixture(scope="module")
def parity():
    require_shared("parity/r50_128x256.npz")
    return import_shared("parity/parity_io.py")


@pytest.fixture(scope="module")
def ref(parity):
    return parity.load("r50_128x256", str(SHARED / "parity"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Recipe weights -> official .pth -> export/convert_official.py -> load_checkpoint."""
    import vknet_core
    from vknet_export import convert_official

    recipe = import_shared("parity/recipe_weights.py")
    spec = SHARED / "parity" / "r50_kitti_step_state_dict.json"
    sd = recipe.generate_state_dict(str(spec))
    meta = json.loads((SHARED / "parity" / "r50_128x256_meta.json").read_text())
    assert recipe.state_dict_sha256(sd) == meta["weights"]["sha256"]
    tmp = tmp_path_factory.mktemp("parity")
    torch.save({"state_dict": sd, "meta": {}}, tmp / "official.pth")
    rc = convert_official.main(
        [
            "--preset",
            "kitti_step_r50",
            "--input",
            str(tmp / "official.pth"),
            "--output",
            str(tmp / "ours.pt"),
        ]
    )
    assert rc == 0
    return vknet_core.load_checkpoint(tmp / "ours.pt")


def t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def check(parity, ours: torch.Tensor, ref, name: str, rtol: float = RTOL) -> None:
    ok, err = parity.compare(ours.detach().numpy(), ref, rtol=rtol)
    assert ok, f"{name}: relative error {err:.3g} > {rtol}"


@torch.no_grad()
def test_backbone_and_fpn(parity, ref, model):
    from vknet_core.model.vknet import FrameStep

    step = FrameStep(model)
    img = t(ref["input_uint8"][:1]).permute(0, 2, 3, 1)  # [1, H, W, 3] uint8
    x = (img.permute(0, 3, 1, 2).float() - step.mean) / step.std
    check(parity, x, ref["f0__input.normalized"], "input.normalized")
    c = model.backbone(x)
    for i in range(4):
        check(parity, c[i], ref[f"f0__backbone.{i}"], f"backbone.{i}")
    p = model.fpn([t(ref[f"f0__backbone.{i}"]) for i in range(4)])
    for i in range(4):
        check(parity, p[i], ref[f"f0__neck.{i}"], f"neck.{i}")


@torch.no_grad()
def test_kernel_head(parity, ref, model):
    thing, stuff = model.sem_fpn([t(ref[f"f0__neck.{i}"]) for i in range(4)])
    check(parity, thing, ref["f0__rpn.semfpn.0"], "rpn.semfpn.0")
    check(parity, stuff, ref["f0__rpn.semfpn.1"], "rpn.semfpn.1")
    kh = model.kernel_head
    sem0, sem1 = t(ref["f0__rpn.semfpn.0"]), t(ref["f0__rpn.semfpn.1"])
    check(parity, kh.loc_conv(sem0), ref["f0__rpn.loc_feats"], "rpn.loc_feats")
    check(parity, kh.seg_conv(sem1), ref["f0__rpn.seg_feats"], "rpn.seg_feats")
    out = kh(sem0, sem1)
    check(parity, out.sem_logits, ref["f0__rpn.seg_preds"], "rpn.seg_preds")
    check(parity, out.x_feats, ref["f0__rpn.out.x_feats"], "rpn.out.x_feats")
    check(parity, out.mask_logits, ref["f0__rpn.out.mask_logits"], "rpn.out.mask_logits")
    check(parity, out.kernels, ref["f0__rpn.out.proposal_kernels"], "rpn.out.proposal_kernels")


@pytest.mark.parametrize("frame", [0, 1])
@pytest.mark.parametrize("s", [0, 1, 2])
@torch.no_grad()
def test_update_stage(parity, ref, model, frame, s):
    f = f"f{frame}__"
    x = t(ref[f + "rpn.out.x_feats"])
    kernels = t(ref[f + f"stage{s}.in.kernels"]).flatten(2)  # [1, N, C]
    masks = t(ref[f + ("rpn.out.mask_logits" if s == 0 else f"stage{s - 1}.mask_logits")])
    stage = model.stages[s]
    out = stage(x, kernels, masks)
    check(parity, out.group_feats, ref[f + f"stage{s}.x_feat_gathered"], "x_feat_gathered")
    upd = stage.kernel_update_conv(t(ref[f + f"stage{s}.x_feat_gathered"]), kernels)
    check(parity, upd, ref[f + f"stage{s}.kernel_updator_out"], "kernel_updator_out")
    check(parity, out.kernels, ref[f + f"stage{s}.ffn_norm_out"], "kernels")
    check(parity, out.cls_logits, ref[f + f"stage{s}.cls_logits"], "cls_logits")
    check(parity, out.mask_logits, ref[f + f"stage{s}.mask_logits"], "mask_logits")


@torch.no_grad()
def test_linking_and_embedding(parity, ref, model):
    assert bool(ref["f1__stage2.in.has_previous"])
    cur = t(ref["f1__stage2.ffn_norm_out"]).flatten(2)  # [1, N, C]
    prev = t(ref["f1__stage2.in.previous_kernels"]).flatten(2)
    linked = model.linker(cur, prev)
    check(parity, linked, ref["f1__stage2.linked_kernels"], "linked_kernels")
    eh = model.embed_head
    for frame, query in ((0, "stage2.ffn_norm_out"), (1, "stage2.linked_kernels")):
        q = t(ref[f"f{frame}__{query}"]).reshape(1, -1, cur.shape[-1])
        check(
            parity,
            eh.fc_embed(eh.embed_fcs(q)),
            ref[f"f{frame}__embed.all_queries.fc_embed"],
            "fc_embed",
        )
        check(parity, eh(q)[0], ref[f"f{frame}__embed.all_queries.track_head"], "track_head")


@torch.no_grad()
def test_end_to_end_frames_0_and_1(parity, ref, model):
    """Image in, FrameOutputs out, state threaded from frame 0 into frame 1 (linked)."""
    from vknet_core.model.vknet import FrameStep

    step = FrameStep(model)
    state = model.initial_state(1)
    Q = model.cfg.head.num_thing_kernels
    for frame in (0, 1):
        img = t(ref["input_uint8"][frame : frame + 1]).permute(0, 2, 3, 1).contiguous()
        out = step(img, *state)
        c = f"clip__f{frame}__"
        check(parity, out.sem_logits, ref[c + "seg_preds"], "sem_logits")
        check(parity, out.cls_prob, ref[c + "cls_scores"], "cls_prob")
        check(parity, out.mask_logits, ref[c + "mask_logits"], "mask_logits")
        check(parity, out.cur_kernels, ref[c + "kernels"], "cur_kernels")
        track_head = ref[f"f{frame}__embed.all_queries.track_head"][:Q]
        check(parity, out.track_embed[0], track_head, "track_embed")
        state = (out.cur_kernels, torch.ones(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@torch.no_grad()
def test_cuda_stages_and_end_to_end(parity, ref, model):
    """The same parity on a GPU in fp32 with TF32 off (parity README: rtol 1e-3)."""
    from vknet_core.model.vknet import FrameStep

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    gpu = model.to(dev)
    try:
        p = gpu.fpn([t(ref[f"f0__backbone.{i}"]).to(dev) for i in range(4)])
        for i in range(4):
            check(parity, p[i].cpu(), ref[f"f0__neck.{i}"], f"cuda neck.{i}", 1e-3)
        for s in range(3):
            f = "f1__"
            x = t(ref[f + "rpn.out.x_feats"]).to(dev)
            kernels = t(ref[f + f"stage{s}.in.kernels"]).flatten(2).to(dev)
            masks = t(ref[f + ("rpn.out.mask_logits" if s == 0 else f"stage{s - 1}.mask_logits")])
            out = gpu.stages[s](x, kernels, masks.to(dev))
            check(
                parity, out.kernels.cpu(), ref[f + f"stage{s}.ffn_norm_out"], "cuda kernels", 1e-3
            )
            check(
                parity, out.mask_logits.cpu(), ref[f + f"stage{s}.mask_logits"], "cuda masks", 1e-3
            )
        step = FrameStep(gpu).to(dev)
        img = t(ref["input_uint8"][:1]).permute(0, 2, 3, 1).contiguous().to(dev)
        out = step(img, *gpu.initial_state(1))
        check(parity, out.cls_prob.cpu(), ref["clip__f0__cls_scores"], "cuda cls_prob", 2e-2)
        check(parity, out.sem_logits.cpu(), ref["clip__f0__seg_preds"], "cuda sem_logits", 1e-3)
    finally:
        model.to("cpu")
