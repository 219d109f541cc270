"""Each loss equals a slow loop reference (video_knet.md §5); the criterion end to end."""

import math

import pytest
import torch
import torch.nn.functional as F

import vknet_core
from tests.core.test_matcher import _brute_force, _costs_loop
from vknet_core.config import LabelConfig, replace
from vknet_core.losses import LossConfig, VideoKNetCriterion
from vknet_core.losses.criterion import rank_targets
from vknet_core.losses.mask_losses import dice_loss, mask_bce, sigmoid_focal_loss
from vknet_core.losses.track_loss import l2_aux_loss, multi_pos_cross_entropy, track_losses
from vknet_core.types import FrameOutputs, TrainOutputs


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _focal_loop(x, t, alpha=0.25, gamma=2.0):
    p = _sig(x)
    return -(
        t * alpha * (1 - p) ** gamma * math.log(p)
        + (1 - t) * (1 - alpha) * p**gamma * math.log(1 - p)
    )


def _bce_loop(xs, ts):
    return sum(
        -(t * math.log(_sig(x)) + (1 - t) * math.log(1 - _sig(x))) for x, t in zip(xs, ts)
    ) / len(xs)


def _dice_loop(xs, ts, eps=1e-3):
    ps = [_sig(x) for x in xs]
    a = sum(p * t for p, t in zip(ps, ts))
    return 1 - 2 * a / (sum(p * p for p in ps) + eps + sum(t * t for t in ts) + eps)


def test_elementwise_losses_equal_loops():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g) * 2
    t = (torch.rand(4, 6, generator=g) > 0.5).float()
    soft = torch.rand(4, 6, generator=g)
    focal = sigmoid_focal_loss(x, t)
    for i in range(4):
        for j in range(6):
            assert float(focal[i, j]) == pytest.approx(
                _focal_loop(float(x[i, j]), float(t[i, j])), rel=1e-5, abs=1e-7
            )
    bce, dice = mask_bce(x, soft), dice_loss(x, soft)
    for i in range(4):
        assert float(bce[i]) == pytest.approx(_bce_loop(x[i].tolist(), soft[i].tolist()), rel=1e-5)
        assert float(dice[i]) == pytest.approx(
            _dice_loop(x[i].tolist(), soft[i].tolist()), rel=1e-5
        )


def _multi_pos_loop(s, t):
    rows = []
    for i in range(len(s)):
        pos = [k for k in range(len(s[i])) if t[i][k]]
        neg = [j for j in range(len(s[i])) if not t[i][j]]
        if not pos:
            continue
        rows.append(math.log(1 + sum(math.exp(s[i][j] - s[i][k]) for k in pos for j in neg)))
    return sum(rows) / len(rows) if rows else 0.0


def _l2_aux_loop(c, t, neg_margin=0.1, ub=3):
    entries = []  # (is_pos, err)
    for i in range(len(c)):
        for j in range(len(c[i])):
            pred = c[i][j] - (0 if t[i][j] else neg_margin)
            pred = min(max(pred, 0.0), 1.0)
            entries.append((t[i][j] == 1, (pred - t[i][j]) ** 2))
    pos = [e for p, e in entries if p]
    neg = [e for p, e in entries if not p]
    if len(neg) / (len(pos) + 1e-6) > ub:
        neg = sorted(neg, reverse=True)[: int(len(pos) * ub)]
    kept = pos + neg
    return sum(kept) / len(kept) if kept else 0.0


@pytest.mark.parametrize("seed,n,m", [(0, 3, 4), (1, 5, 2), (2, 1, 1), (3, 6, 6)])
def test_track_losses_equal_loops(seed, n, m):
    g = torch.Generator().manual_seed(seed)
    key, ref = torch.randn(n, 8, generator=g), torch.randn(m, 8, generator=g)
    key_ids = torch.randint(0, 4, (n,), generator=g)
    ref_ids = torch.randint(0, 4, (m,), generator=g)
    t = (key_ids[:, None] == ref_ids[None]).int().tolist()
    lt, la = track_losses(key, ref, key_ids, ref_ids)
    dots = (key @ ref.t()).tolist()
    cos = (F.normalize(key, dim=1) @ F.normalize(ref, dim=1).t()).tolist()
    assert float(lt) == pytest.approx(_multi_pos_loop(dots, t), rel=1e-5, abs=1e-6)
    assert float(la) == pytest.approx(_l2_aux_loop(cos, t), rel=1e-5, abs=1e-7)


def test_multi_pos_ce_is_stable_and_zero_without_positives():
    s = torch.tensor([[200.0, -200.0, 0.0]], requires_grad=True)
    loss = multi_pos_cross_entropy(s, torch.tensor([[0.0, 1.0, 0.0]]))
    assert float(loss) == pytest.approx(400.0, rel=1e-5)  # log(1 + e^400 + e^200) ~ 400
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert float(multi_pos_cross_entropy(s, torch.zeros(1, 3))) == 0.0
    assert float(l2_aux_loss(torch.zeros(0, 0), torch.zeros(0, 0))) == 0.0


def _rank_loop(pos_masks, kernel_idx, H, W, ignore=255):
    target = [[ignore] * W for _ in range(H)]
    for m, k in sorted(zip(range(len(kernel_idx)), kernel_idx.tolist()), key=lambda x: x[1]):
        for y in range(H):
            for x in range(W):
                if pos_masks[m, y, x] > 0:
                    target[y][x] = k
    return torch.tensor(target)


def test_rank_targets_equal_official_loop():
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(4, 6, 7, generator=g) > 0.6).float() * torch.rand(4, 6, 7, generator=g)
    kidx = torch.tensor([7, 2, 9, 4])
    assert torch.equal(rank_targets(masks, kidx, 255), _rank_loop(masks, kidx, 6, 7))


# ---------------------------------------------------------------- criterion vs loop reference


def _small_cfg(Q=3):
    labels = LabelConfig(class_names=("a", "b", "c", "d"), thing_train_ids=(1, 3))
    base = vknet_core.get_preset("tiny")
    return replace(base, labels=labels, head=replace(base.head, num_thing_kernels=Q))


def _fake_outputs(g, B, Q, N, K, h, w, S=3, E=4, requires_grad=False):
    def r(*shape, scale=2.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_(requires_grad)

    cls = tuple(r(B, N, K) for _ in range(S))
    masks = tuple(r(B, N, h, w, scale=3.0) for _ in range(S))
    frame = FrameOutputs(cls[-1].sigmoid(), masks[-1], r(B, N, 8), r(B, Q, E), r(B, K, h, w))
    return TrainOutputs(frame, r(B, Q, h, w, scale=3.0), cls, masks)


def _fake_targets(g, H2, W2, ids):
    """Things with model labels 0/1 and instance ids ``ids``, stuff classes 2, 3."""
    sem = torch.full((H2, W2), 2, dtype=torch.long)
    sem[: H2 // 2] = 3
    sem[0, :3] = 255
    masks, labels, inst, th = [], [], [], []
    for i, pid in enumerate(ids):
        m = torch.zeros(H2, W2)
        y = torch.randint(0, H2 - 3, (1,), generator=g)
        x = torch.randint(0, W2 - 4, (1,), generator=g)
        m[y : y + 3, x : x + 4] = torch.rand(3, 4, generator=g) * 0.5 + 0.5
        masks.append(m), labels.append(i % 2), inst.append(pid), th.append(True)
        sem[m > 0.5] = i % 2
    for c in (2, 3):
        masks.append((sem == c).float()), labels.append(c), inst.append(-1), th.append(False)
    return dict(
        masks=torch.stack(masks),
        labels=torch.tensor(labels),
        instance_ids=torch.tensor(inst),
        is_thing=torch.tensor(th),
        sem_seg=sem,
    )


def _assign_loop(mask_logits, gt, cls, labels):
    _, pairs = _brute_force(_costs_loop(mask_logits, gt, cls, labels))
    return sorted(pairs)


def _frame_loop(out, targets, Q, K, nt=2):
    """All segmentation losses of one frame with plain loops (weights of LossConfig())."""
    B, S = len(targets), len(out.stage_mask_logits)

    def up(x):
        return F.interpolate(
            x.detach().float(), scale_factor=4, mode="bilinear", align_corners=False
        )

    rpn, sem = up(out.rpn_mask_logits), up(out.frame.sem_logits)
    stage_masks = [up(m) for m in out.stage_mask_logits]
    res, H2, W2 = {}, rpn.shape[-2], rpn.shape[-1]
    # RPN
    assigns, bce, dice, rank, seg, npos = [], 0.0, 0.0, 0.0, 0.0, 0
    for b, t in enumerate(targets):
        gt, gl = t["masks"][t["is_thing"]], t["labels"][t["is_thing"]]
        a = _assign_loop(rpn[b], gt, None, gl)
        assigns.append(a)
        for k, j in a:
            bce += _bce_loop(rpn[b, k].flatten().tolist(), gt[j].flatten().tolist())
            dice += _dice_loop(rpn[b, k].flatten().tolist(), gt[j].flatten().tolist())
            npos += 1
        rt = _rank_loop(gt[[j for _, j in a]], torch.tensor([k for k, _ in a]), H2, W2)
        for y in range(H2):
            for x in range(W2):
                if rt[y, x] != 255:
                    rank += -float(torch.log_softmax(rpn[b, :, y, x], 0)[rt[y, x]])
                if t["sem_seg"][y, x] != 255:
                    seg += -float(torch.log_softmax(sem[b, :, y, x], 0)[t["sem_seg"][y, x]])
    res["loss_rpn_mask"] = bce / max(npos, 1)
    res["loss_rpn_dice"] = 4 * dice / max(npos, 1)
    res["loss_rpn_rank"] = 0.1 * rank / (B * H2 * W2)
    res["loss_rpn_seg"] = seg / (B * H2 * W2)
    # stages: stage s assigned with stage s-1 (RPN for s = 0)
    final = None
    for s in range(S + 1):
        if s > 0:
            assigns = []
            for b, t in enumerate(targets):
                gt, gl = t["masks"][t["is_thing"]], t["labels"][t["is_thing"]]
                assigns.append(
                    _assign_loop(
                        stage_masks[s - 1][b, :Q],
                        gt,
                        out.stage_cls_logits[s - 1][b, :Q].detach(),
                        gl,
                    )
                )
        if s == S:
            final = assigns
            break
        focal, bce, dice, npos = 0.0, 0.0, 0.0, 0
        for b, t in enumerate(targets):
            gt, gl = t["masks"][t["is_thing"]], t["labels"][t["is_thing"]]
            label = {k: int(gl[j]) for k, j in assigns[b]}
            target_mask = {k: gt[j] for k, j in assigns[b]}
            for c, m in zip(t["labels"][~t["is_thing"]].tolist(), t["masks"][~t["is_thing"]]):
                label[Q + c - nt], target_mask[Q + c - nt] = c, m
            for n in range(out.stage_cls_logits[s].shape[1]):
                for k in range(K):
                    if n < Q and k >= nt:
                        continue  # thing kernels: thing columns only
                    if n >= Q and k != n - Q + nt:
                        continue  # stuff kernels: own column only
                    focal += _focal_loop(
                        float(out.stage_cls_logits[s][b, n, k]), float(label.get(n, -1) == k)
                    )
            for n, tm in target_mask.items():
                pred = stage_masks[s][b, n].flatten().tolist()
                bce += _bce_loop(pred, tm.flatten().tolist())
                dice += _dice_loop(pred, tm.flatten().tolist())
                npos += 1
        res[f"loss_cls_s{s}"] = 2 * focal / max(npos, 1)
        res[f"loss_mask_s{s}"] = bce / max(npos, 1)
        res[f"loss_dice_s{s}"] = 4 * dice / max(npos, 1)
    return res, final


def test_criterion_equals_loop_reference():
    g = torch.Generator().manual_seed(0)
    cfg = _small_cfg(Q=4)
    Q, K = 4, 4
    N, B, h, w = Q + 2, 2, 2, 3
    out_key = _fake_outputs(g, B, Q, N, K, h, w, requires_grad=True)
    out_ref = _fake_outputs(g, B, Q, N, K, h, w)
    tk = [_fake_targets(g, 8, 12, [1001, 3002, 1003]), _fake_targets(g, 8, 12, [1005, 3007])]
    tr = [_fake_targets(g, 8, 12, [3002, 1001, 1004]), _fake_targets(g, 8, 12, [1005])]
    losses = VideoKNetCriterion(cfg, LossConfig())(out_key, out_ref, tk, tr)
    exp_key, fin_key = _frame_loop(out_key, tk, Q, K)
    exp_ref, fin_ref = _frame_loop(out_ref, tr, Q, K)
    expected = dict(exp_key, **{k + "_ref": v for k, v in exp_ref.items()})
    track, aux = 0.0, 0.0
    for b in range(B):
        ki = [k for k, _ in fin_key[b]]
        ri = [k for k, _ in fin_ref[b]]
        kid = [int(tk[b]["instance_ids"][j]) for _, j in fin_key[b]]
        rid = [int(tr[b]["instance_ids"][j]) for _, j in fin_ref[b]]
        ke, re = out_key.frame.track_embed[b, ki].detach(), out_ref.frame.track_embed[b, ri]
        t = [[int(a == c) for c in rid] for a in kid]
        track += _multi_pos_loop((ke @ re.t()).tolist(), t)
        cos = F.normalize(ke, dim=1) @ F.normalize(re, dim=1).t()
        aux += _l2_aux_loop(cos.tolist(), t)
    expected["loss_track"] = 0.25 * track / B
    expected["loss_track_aux"] = aux / B
    assert set(losses) == set(expected)
    for k, v in expected.items():
        assert float(losses[k]) == pytest.approx(v, rel=1e-4, abs=1e-6), k
    sum(losses.values()).backward()
    assert out_key.rpn_mask_logits.grad is not None
    assert all(torch.isfinite(x.grad).all() for x in out_key.stage_cls_logits)


def test_criterion_with_model_backward_and_errors():
    torch.manual_seed(0)
    model = vknet_core.build_model("tiny")
    B, H, W = 1, 64, 64
    img = torch.randn(B, 3, H, W)
    ref = model.forward_train(img, *model.initial_state(B))
    key = model.forward_train(img, ref.frame.cur_kernels, torch.ones(B))
    g = torch.Generator().manual_seed(1)
    t = _fake_targets(g, H // 2, W // 2, [11001, 13002])
    t["labels"] = torch.tensor([0, 1, 2, 3])  # model labels: person, car, two stuff classes
    crit = VideoKNetCriterion(model.cfg)
    losses = crit(key, ref, [t], [t])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(int(gr is not None) for gr in grads) > 0.9 * len(grads)
    bad = dict(t, masks=t["masks"][:, :8])
    with pytest.raises(ValueError, match="stride 2"):
        crit(key, ref, [bad], [t])
    with pytest.raises(KeyError, match="sem_seg"):
        crit(key, ref, [{k: v for k, v in t.items() if k != "sem_seg"}], [t])
