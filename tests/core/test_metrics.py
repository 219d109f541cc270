"""STQ / VPQ: shared reference vectors, slow per-pixel loop references, streaming invariants."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from vknet_core.metrics import STQAccumulator, VPQAccumulator, stq, vpq, vpq_windows

VECTORS = (
    Path(os.environ.get("VKNET_SHARED", Path(__file__).parents[2] / ".." / "shared"))
    / "metric_vectors"
)


def _expected() -> dict:
    f = VECTORS / "expected.json"
    return json.loads(f.read_text()) if f.exists() else {"cases": {}, "meta": {}}


EXPECTED = _expected()
CASES = sorted(EXPECTED["cases"]) or ["<missing>"]


def _load_case(name: str):
    if not (VECTORS / "expected.json").exists():
        pytest.skip(
            f"metric vectors not found at {VECTORS.resolve()} (clone shared/ beside the repo "
            "or set VKNET_SHARED)"
        )
    case = EXPECTED["cases"][name]
    z = np.load(VECTORS / case["file"])
    args = (
        list(z["gt"]),
        list(z["pred"]),
        int(z["num_classes"]),
        z["things"].tolist(),
        int(z["label_divisor"]),
        int(z["ignore_label"]),
    )
    return case, args


def _close(a, b, tol=1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol


# ----------------------------------------------------------------------------- reference vectors


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("variant", ["stq", "stq_void_masked"])
def test_stq_matches_reference_vectors(name, variant):
    case, args = _load_case(name)
    if variant not in case:
        pytest.skip(f"{name} has no {variant} values")
    exp = case[variant]
    got = stq(*args, mask_void=variant == "stq_void_masked")
    for key in ("STQ", "AQ", "SQ", "IoU"):
        if key in exp:
            assert _close(got[key], exp[key]), (key, got[key], exp[key])
    for key in ("STQ_per_seq", "AQ_per_seq", "IoU_per_seq"):
        if key in exp:
            np.testing.assert_allclose(got[key], exp[key], atol=1e-6, rtol=0, err_msg=key)


@pytest.mark.parametrize("name", CASES)
def test_vpq_matches_reference_vectors(name):
    case, args = _load_case(name)
    exp = case["vpq"]
    ks = EXPECTED["meta"].get("k_values", [0, 1, 2, 3])
    got = vpq_windows(*args, ks=ks)
    for kk, e in exp.items():
        g = got[kk]
        for key in ("VPQ", "VPQ_thing", "VPQ_stuff", "SQ", "RQ"):
            if key in e:
                assert _close(g[key], e[key]), (kk, key, g[key], e[key])
        if kk == "mean":
            continue
        assert g["num_windows"] == e["num_windows"]
        assert g["n_classes"] == e["n_classes"]
        assert set(g["per_class"]) == set(e["per_class"]), kk
        for c, row in e["per_class"].items():
            for f in ("tp", "fp", "fn"):
                assert g["per_class"][c][f] == row[f], (kk, c, f)
            assert _close(g["per_class"][c]["iou"], row["iou"]), (kk, c)
    # the single-window function agrees with the multi-window one
    single = vpq(*args, k=ks[-1])
    assert _close(single["VPQ"], got[f"k{ks[-1]}"]["VPQ"])


# ------------------------------------------------------------------------- slow loop references


def stq_loop(gts, preds, C, things, D, ign):
    """deeplab2's STQuality written with Python dicts and per-pixel loops."""
    size = C + 1 if ign >= C else C
    include = list(range(C)) if ign >= C else [i for i in range(C) if i != ign]
    aq_num, tubes, total = 0.0, 0, np.zeros((size, size), np.int64)
    aq_seq, iou_seq = [], []
    for gv, pv in zip(gts, preds):
        gsz, psz, inter = defaultdict(int), defaultdict(int), defaultdict(int)
        conf = np.zeros((size, size), np.int64)
        for g, p in zip(gv.ravel().tolist(), pv.ravel().tolist()):
            sg, sp = g // D, p // D
            ig = C if (ign >= C and sg == ign) else sg
            ip = C if (ign >= C and sp == ign) else sp
            conf[ig, ip] += 1
            crowd = sg in things and g % D == 0
            if crowd:
                continue
            if sg in things:
                gsz[g] += 1
            if sp in things:
                psz[p] += 1
            if sg in things and sp in things:
                inter[(g, p)] += 1
        s = 0.0
        for g, gs in gsz.items():
            inner = 0.0
            for p, ps in psz.items():
                if (g, p) in inter:
                    t = inter[(g, p)]
                    inner += t * (t / (t + (ps - t) + (gs - t)))
            s += inner / gs
        aq_num += s
        tubes += len(gsz)
        aq_seq.append(s / max(len(gsz), 1e-15))
        mask = np.zeros_like(conf)
        mask[include, :] = 1
        conf = conf * mask
        total += conf
        iou_seq.append(_miou_loop(conf))
    aq = aq_num / max(tubes, 1e-15)
    iou = _miou_loop(total)
    return {
        "STQ": math.sqrt(aq * iou),
        "AQ": aq,
        "SQ": iou,
        "STQ_per_seq": [math.sqrt(a * i) for a, i in zip(aq_seq, iou_seq)],
    }


def _miou_loop(conf):
    vals = []
    for i in range(conf.shape[0]):
        tp = conf[i, i]
        union = conf[i, :].sum() + conf[:, i].sum() - tp
        if union > 0:
            vals.append(tp / union)
    return sum(vals) / len(vals)


def vpq_loop(gts, preds, C, things, D, ign, n):
    """mcahny/vps ``vpq_compute_single_core`` + ``pq_average`` on dicts, per-pixel loops."""
    tp, fp, fn, iou_sum = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(float)
    for gv, pv in zip(gts, preds):
        for start in range(0, len(gv) - n + 1):
            gseg, pseg, pairs = {}, {}, defaultdict(int)
            for g, p in zip(
                gv[start : start + n].ravel().tolist(), pv[start : start + n].ravel().tolist()
            ):
                gl = 0 if g // D == ign else g + 1
                pl = 0 if p // D == ign else p + 1
                pairs[(gl, pl)] += 1
                if gl:
                    info = gseg.setdefault(
                        gl, {"cat": g // D, "crowd": g // D in things and g % D == 0, "area": 0}
                    )
                    info["area"] += 1
                if pl:
                    pseg.setdefault(pl, {"cat": p // D, "area": 0})["area"] += 1
            gm, pm = set(), set()
            for (gl, pl), inter in pairs.items():
                if gl not in gseg or pl not in pseg or gseg[gl]["crowd"]:
                    continue
                if gseg[gl]["cat"] != pseg[pl]["cat"]:
                    continue
                union = pseg[pl]["area"] + gseg[gl]["area"] - inter - pairs.get((0, pl), 0)
                iou = inter / union
                if iou > 0.5:
                    tp[gseg[gl]["cat"]] += 1
                    iou_sum[gseg[gl]["cat"]] += iou
                    gm.add(gl)
                    pm.add(pl)
            crowd = {}
            for gl, info in gseg.items():
                if gl in gm:
                    continue
                if info["crowd"]:
                    crowd[info["cat"]] = gl
                    continue
                fn[info["cat"]] += 1
            for pl, info in pseg.items():
                if pl in pm:
                    continue
                inter = pairs.get((0, pl), 0)
                if info["cat"] in crowd:
                    inter += pairs.get((crowd[info["cat"]], pl), 0)
                if inter / info["area"] > 0.5:
                    continue
                fp[info["cat"]] += 1
    out = {}
    for name, sel in (("VPQ", None), ("VPQ_thing", True), ("VPQ_stuff", False)):
        pqs = []
        for c in range(C):
            if c == ign or (sel is not None and (c in things) != sel):
                continue
            if tp[c] + fp[c] + fn[c] == 0:
                continue
            pqs.append(iou_sum[c] / (tp[c] + 0.5 * fp[c] + 0.5 * fn[c]))
        out[name] = sum(pqs) / len(pqs) if pqs else None
    out["per_class"] = {c: (tp[c], fp[c], fn[c]) for c in range(C) if tp[c] + fp[c] + fn[c]}
    return out


def random_case(rng, D, C=6, things=(1, 3), ign=255, S=2, T=4, H=9, W=11):
    """Blocky random GT with crowd/void and a prediction that mostly follows it."""
    gts, preds = [], []
    for _ in range(S):
        sem = (
            rng.integers(0, C, size=(T, H // 3 + 1, W // 3 + 1))
            .repeat(3, 1)
            .repeat(3, 2)[:, :H, :W]
        )
        inst = rng.integers(0, 3, size=sem.shape)  # 0 -> crowd on thing classes
        is_thing = np.isin(sem, things)
        gt = sem * D + np.where(is_thing, inst, 0)
        gt[rng.random(sem.shape) < 0.08] = ign * D
        pred = gt.copy()
        noise = rng.random(sem.shape)
        pred[noise < 0.15] = rng.integers(0, C, size=(noise < 0.15).sum()) * D + rng.integers(
            0, 4, size=(noise < 0.15).sum()
        )
        swap = (noise > 0.9) & np.isin(pred // D, things)
        pred[swap] = (pred[swap] // D) * D + 2
        pred[rng.random(sem.shape) < 0.03] = ign * D
        gts.append(gt.astype(np.int32 if D < 65536 else np.int64))
        preds.append(pred.astype(np.int32 if D < 65536 else np.int64))
    return gts, preds


@pytest.mark.parametrize("D", [1000, 65536, 256, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stq_equals_loop_reference(D, seed):
    rng = np.random.default_rng(seed)
    gts, preds = random_case(rng, D)
    got = stq(gts, preds, 6, (1, 3), D, 255)
    ref = stq_loop(gts, preds, 6, {1, 3}, D, 255)
    for k in ("STQ", "AQ", "SQ"):
        assert got[k] == pytest.approx(ref[k], abs=1e-12)
    np.testing.assert_allclose(got["STQ_per_seq"], ref["STQ_per_seq"], atol=1e-12)


@pytest.mark.parametrize("D", [1000, 65536, 100])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_vpq_equals_loop_reference(D, n, seed):
    rng = np.random.default_rng(seed + 10)
    gts, preds = random_case(rng, D)
    got = vpq(gts, preds, 6, (1, 3), D, 255, k=n - 1)
    ref = vpq_loop(gts, preds, 6, {1, 3}, D, 255, n)
    for k in ("VPQ", "VPQ_thing", "VPQ_stuff"):
        assert _close(got[k], ref[k], 1e-12), (k, got[k], ref[k])
    assert {int(c): (r["tp"], r["fp"], r["fn"]) for c, r in got["per_class"].items()} == ref[
        "per_class"
    ]


def test_ignore_label_inside_class_range_matches_loop():
    """deeplab2 semantics when the ignore label is one of 0..C-1 (Cityscapes-DVPS: 32 of 33)."""
    rng = np.random.default_rng(5)
    gts, preds = random_case(rng, 1000, C=6, ign=5)
    got = stq(gts, preds, 6, (1, 3), 1000, 5)
    ref = stq_loop(gts, preds, 6, {1, 3}, 1000, 5)
    assert got["STQ"] == pytest.approx(ref["STQ"], abs=1e-12)
    gv = vpq(gts, preds, 6, (1, 3), 1000, 5, k=1)
    rv = vpq_loop(gts, preds, 6, {1, 3}, 1000, 5, 2)
    assert _close(gv["VPQ"], rv["VPQ"], 1e-12)
    assert "5" not in gv["per_class"]


# --------------------------------------------------------------------- behaviour and invariants


def test_streaming_frame_by_frame_equals_whole_videos():
    rng = np.random.default_rng(3)
    gts, preds = random_case(rng, 1000, S=3, T=5)
    sacc = STQAccumulator(6, (1, 3), 1000, 255)
    vacc = VPQAccumulator(6, (1, 3), 1000, 255, ks=(0, 1, 2, 3))
    # interleave the sequences frame by frame: state is kept per sequence id
    for t in range(5):
        for s in range(3):
            sacc.update(gts[s][t], preds[s][t], sequence_id=f"seq{s}")
            vacc.update(gts[s][t], preds[s][t], sequence_id=f"seq{s}")
    whole_s = stq(gts, preds, 6, (1, 3), 1000, 255)
    whole_v = vpq_windows(gts, preds, 6, (1, 3), 1000, 255, ks=(0, 1, 2, 3))
    res_s, res_v = sacc.result(), vacc.result()
    assert res_s["STQ"] == pytest.approx(whole_s["STQ"], abs=1e-12)
    assert res_s["sequence_ids"] == ["seq0", "seq1", "seq2"]
    for kk in ("k0", "k1", "k2", "k3", "mean"):
        assert res_v[kk]["VPQ"] == pytest.approx(whole_v[kk]["VPQ"], abs=1e-12)


def test_dtypes_give_identical_results_without_overflow():
    """int32 / uint32 / int64 inputs with a 2^16 divisor (metrics.md P9)."""
    rng = np.random.default_rng(4)
    gts, preds = random_case(rng, 65536)
    ref_s = stq(gts, preds, 6, (1, 3), 65536, 255)
    ref_v = vpq(gts, preds, 6, (1, 3), 65536, 255, k=1)
    for dt in (np.int32, np.uint32):
        g = [x.astype(dt) for x in gts]
        p = [x.astype(dt) for x in preds]
        assert stq(g, p, 6, (1, 3), 65536, 255)["STQ"] == ref_s["STQ"]
        assert vpq(g, p, 6, (1, 3), 65536, 255, k=1)["VPQ"] == ref_v["VPQ"]


def test_split_track_scores_half_and_perfect_scores_one():
    gt = np.full((4, 6, 6), 0, np.int64)  # road
    gt[:, 1:4, 1:4] = 13 * 1000 + 7  # one car tube
    pred = gt.copy()
    r = stq([gt], [pred], 19, (11, 13))
    assert r["STQ"] == 1.0 and r["AQ"] == 1.0 and r["SQ"] == 1.0
    v = vpq([gt], [pred], 19, (11, 13), k=3)
    assert v["VPQ"] == 1.0 and v["num_windows"] == 1
    pred[2:, 1:4, 1:4] = 13 * 1000 + 9  # id switch halfway: the tube is split 50/50
    r = stq([gt], [pred], 19, (11, 13))
    assert r["AQ"] == pytest.approx(0.5) and r["STQ"] == pytest.approx(math.sqrt(0.5))
    assert (
        vpq([gt], [pred], 19, (11, 13), k=0)["VPQ"] == 1.0
    )  # single frames do not see the switch
    assert vpq([gt], [pred], 19, (11, 13), k=3)["VPQ_thing"] == 0.0  # the 4-frame tube does


def test_empty_groups_and_no_gt_tracks():
    gt = np.zeros((2, 4, 4), np.int64)  # only road, no thing tubes at all
    r = stq([gt], [gt.copy()], 19, (11, 13))
    assert r["AQ"] == 0.0 and r["STQ"] == 0.0 and r["SQ"] == 1.0
    v = vpq([gt], [gt.copy()], 19, (11, 13))
    assert v["VPQ_thing"] is None and v["VPQ"] == 1.0
    # sequences shorter than the window give no windows and no values
    v = vpq_windows([gt], [gt.copy()], 19, (11, 13), ks=(0, 5))
    assert v["k5"]["num_windows"] == 0 and v["k5"]["VPQ"] is None and v["mean"]["VPQ"] is None


def test_frame_stride_maps_cityscapes_vps_windows():
    rng = np.random.default_rng(8)
    gts, preds = random_case(rng, 1000, T=6)
    a = vpq_windows(gts, preds, 6, (1, 3), ks=(0, 5, 10, 15), frame_stride=5)
    b = vpq_windows(gts, preds, 6, (1, 3), ks=(0, 1, 2, 3))
    for ka, kb in (("k0", "k0"), ("k5", "k1"), ("k10", "k2"), ("k15", "k3")):
        assert a[ka]["VPQ"] == b[kb]["VPQ"]
    with pytest.raises(ValueError, match="multiples of frame_stride"):
        VPQAccumulator(6, (1,), ks=(0, 3), frame_stride=5)


def test_clear_errors_on_bad_input():
    gt = np.zeros((2, 4, 4), np.int64)
    with pytest.raises(ValueError, match="shapes differ"):
        stq([gt], [gt[:, :3]], 19, (11, 13))
    with pytest.raises(ValueError, match=r"semantic ids \[20\]"):
        stq([gt], [np.full_like(gt, 20 * 1000)], 19, (11, 13))
    with pytest.raises(TypeError, match="integer panoptic ids"):
        vpq([gt], [gt.astype(np.float32)], 19, (11, 13))
    with pytest.raises(ValueError, match="negative"):
        vpq([gt], [gt - 1], 19, (11, 13))
    with pytest.raises(ValueError, match="GT videos"):
        stq([gt, gt], [gt], 19, (11, 13))
    with pytest.raises(ValueError, match="thing classes"):
        stq([gt], [gt], 19, (11, 30))
