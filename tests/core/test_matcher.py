"""HungarianMatcher equals brute force over all assignments; pairwise costs equal loops."""

import itertools
import math

import pytest
import torch

from vknet_core.losses.mask_losses import dice_cost, focal_cost, mask_cost
from vknet_core.losses.matcher import HungarianMatcher, MatchCosts


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _costs_loop(mask_logits, gt, cls_logits, labels, w=None):
    w = MatchCosts() if w is None else w
    Q, M = mask_logits.shape[0], gt.shape[0]
    p = mask_logits.flatten(1).tolist()
    t = gt.flatten(1).tolist()
    P = len(t[0]) if M else 0
    cost = [[0.0] * M for _ in range(Q)]
    for i in range(Q):
        for j in range(M):
            pm = [min(max(_sig(x), 0.01), 1.0) for x in p[i]]
            pd = [min(max(_sig(x), 0.001), 1.0) for x in p[i]]
            mc = -sum(a * b + (1 - a) * (1 - b) for a, b in zip(pm, t[j])) / P
            num = 2 * sum(a * b for a, b in zip(pd, t[j]))
            den = sum(a * a for a in pd) + sum(b * b for b in t[j]) + 2e-3
            c = w.mask * mc + w.dice * (-num / den)
            if cls_logits is not None:
                q = _sig(float(cls_logits[i, labels[j]]))
                pos = 0.25 * (1 - q) ** 2 * -math.log(q + 1e-12)
                neg = 0.75 * q**2 * -math.log(1 - q + 1e-12)
                c += w.cls * (pos - neg)
            cost[i][j] = c
    return torch.tensor(cost)


def _brute_force(cost):
    Q, M = cost.shape
    best, best_perm = float("inf"), None
    if Q >= M:
        for perm in itertools.permutations(range(Q), M):  # perm[j] = kernel of gt j
            s = sum(float(cost[perm[j], j]) for j in range(M))
            if s < best:
                best, best_perm = s, perm
        return best, {(best_perm[j], j) for j in range(M)}
    for perm in itertools.permutations(range(M), Q):  # perm[i] = gt of kernel i
        s = sum(float(cost[i, perm[i]]) for i in range(Q))
        if s < best:
            best, best_perm = s, perm
    return best, {(i, best_perm[i]) for i in range(Q)}


def _case(seed, Q, M, K=5, size=(4, 5)):
    g = torch.Generator().manual_seed(seed)
    mask_logits = torch.randn(Q, *size, generator=g) * 3
    gt = (torch.rand(M, *size, generator=g) > 0.6).float() * torch.rand(M, *size, generator=g)
    cls_logits = torch.randn(Q, K, generator=g) * 2
    labels = torch.randint(0, K, (M,), generator=g)
    return mask_logits, gt, cls_logits, labels


@pytest.mark.parametrize("seed,Q,M", [(0, 4, 3), (1, 5, 5), (2, 6, 2), (3, 3, 5), (4, 1, 1)])
@pytest.mark.parametrize("with_cls", [True, False])
def test_matcher_equals_brute_force(seed, Q, M, with_cls):
    mask_logits, gt, cls_logits, labels = _case(seed, Q, M)
    cls = cls_logits if with_cls else None
    matcher = HungarianMatcher()
    cost = matcher.cost_matrix(mask_logits, gt, cls, labels)
    torch.testing.assert_close(
        cost, _costs_loop(mask_logits, gt, cls, labels), atol=1e-5, rtol=1e-5
    )
    rows, cols = matcher(mask_logits, gt, cls, labels)
    assert len(rows) == min(Q, M) and len(set(rows.tolist())) == len(rows)
    assert len(set(cols.tolist())) == len(cols)
    total = float(cost[rows, cols].sum())
    best, pairs = _brute_force(cost)
    assert total == pytest.approx(best, abs=1e-5)
    assert set(zip(rows.tolist(), cols.tolist())) == pairs  # random costs: unique optimum


def test_matcher_prefers_overlapping_mask():
    gt = torch.zeros(2, 8, 8)
    gt[0, :4, :4] = 1
    gt[1, 4:, 4:] = 1
    logits = torch.full((3, 8, 8), -6.0)
    logits[2, :4, :4] = 6.0  # kernel 2 predicts gt 0
    logits[0, 4:, 4:] = 6.0  # kernel 0 predicts gt 1
    rows, cols = HungarianMatcher()(logits, gt)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 2: 0}


def test_matcher_empty_and_shape_errors():
    rows, cols = HungarianMatcher()(torch.randn(4, 3, 3), torch.zeros(0, 3, 3))
    assert rows.numel() == 0 and cols.numel() == 0
    with pytest.raises(ValueError, match="same spatial size"):
        HungarianMatcher()(torch.randn(4, 3, 3), torch.zeros(2, 4, 4))


def test_pairwise_cost_functions_are_unweighted_terms():
    mask_logits, gt, cls_logits, labels = _case(7, 3, 2)

    def only(**kw):
        return _costs_loop(
            mask_logits,
            gt,
            cls_logits if "cls" in kw else None,
            labels,
            MatchCosts(**{"cls": 0, "mask": 0, "dice": 0, **kw}),
        )

    p, t = mask_logits.flatten(1), gt.flatten(1)
    torch.testing.assert_close(mask_cost(p, t), only(mask=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dice_cost(p, t), only(dice=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(focal_cost(cls_logits, labels), only(cls=1), atol=1e-5, rtol=1e-5)


def test_match_batch_equals_per_image_calls():
    cases = [_case(10 + i, 5, m) for i, m in enumerate([3, 0, 5, 1])]
    masks = torch.stack([c[0] for c in cases])
    cls = torch.stack([c[2] for c in cases])
    matcher = HungarianMatcher()
    batch = matcher.match_batch(masks, [c[1] for c in cases], cls, [c[3] for c in cases])
    for (rows, cols), (m, gt, c, lab) in zip(batch, cases):
        r1, c1 = matcher(m, gt, c, lab)
        assert torch.equal(rows, r1) and torch.equal(cols, c1)
        assert len(rows) == min(5, gt.shape[0])
