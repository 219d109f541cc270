"""Track-id recycling: the pool alone, then the whole pipeline past the 16-bit id space."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vknet_core.config import VideoConfig, tiny
from vknet_core.io_spec import io_spec
from vknet_core.pipeline import LIVE_LABEL_DIVISOR, PipelineConfig, VideoPanopticPipeline
from vknet_core.tracking.id_pool import MAX_TRACK_ID, IdPool, IdPoolExhausted
from vknet_core.tracking.tracker import TrackerConfig


def test_pool_hands_out_fresh_ids_then_least_recently_released():
    pool = IdPool(size=5)
    assert pool.acquire(3).tolist() == [1, 2, 3]
    pool.release([2])
    pool.release(np.array([1]))
    assert pool.acquire(2).tolist() == [4, 5]  # never-used ids first
    assert pool.acquire(2).tolist() == [2, 1]  # then in release order
    assert pool.free == 0 and pool.held == 5
    with pytest.raises(IdPoolExhausted, match="0 of 5 are free"):
        pool.acquire(1)
    with pytest.raises(ValueError, match="not all held"):
        pool.release([7])
    pool.release([3])
    with pytest.raises(ValueError, match="not all held"):
        pool.release([3])  # twice
    pool.reset()
    assert pool.acquire(5).tolist() == [1, 2, 3, 4, 5]


def test_pool_never_hands_out_a_held_id_over_many_cycles():
    rng = np.random.default_rng(0)
    pool = IdPool(size=50)
    held: list[int] = []
    last_release: dict[int, int] = {}
    handed, most_held = 0, 0
    for _ in range(5000):
        new = pool.acquire(int(rng.integers(0, min(4, pool.free) + 1))).tolist()
        assert not set(new) & set(held)
        for i in new:  # recent-window guarantee: >= size - live ids handed out in between
            if i in last_release:
                assert handed - last_release[i] >= 50 - most_held
            handed += 1
        held += new
        most_held = max(most_held, len(held))
        rng.shuffle(held)
        k = max(0, len(held) - int(rng.integers(5, 20)))
        out, held = held[:k], held[k:]
        pool.release(out)
        last_release.update({i: handed for i in out})


def test_live_divisor_fits_the_published_encodings():
    cfg = PipelineConfig()
    assert cfg.label_divisor == LIVE_LABEL_DIVISOR == 65536 and cfg.max_track_id == MAX_TRACK_ID
    assert 255 * cfg.label_divisor + cfg.max_track_id < 2**31  # ~/panoptic is int32
    assert MAX_TRACK_ID <= np.iinfo(np.uint16).max  # ~/instance_ids is 16UC1
    with pytest.raises(ValueError, match="label_divisor"):
        PipelineConfig(label_divisor=2**24)


# the tiny model with 100 thing kernels and 256-d embeddings: 98 new tracks per frame
CFG = dataclasses.replace(
    tiny(),
    head=dataclasses.replace(tiny().head, num_thing_kernels=100),
    video=VideoConfig(link_type="ffn", fusion=False, embed_channels=256),
)
Q, K, T = CFG.head.num_thing_kernels, CFG.labels.num_classes, CFG.labels.num_things
N, C, E = CFG.num_kernels, CFG.neck.channels, CFG.video.embed_channels
NEW = Q - 2  # kernels 2..Q-1 draw objects that appear for one frame only


class ChurnBackend:
    """Two objects that stay (kernels 0, 1) and ``NEW`` objects per frame that are never seen
    again: their embeddings alternate between two sets of basis vectors orthogonal to everything
    in the tracker's memory, so each one starts a new track."""

    name = "churn"
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.t = 0
        self.cfg = CFG
        self.spec = io_spec(CFG, dynamic=True)

    def step(self, feeds):
        H, W = feeds["image"].shape[1:3]
        h, w = H // 8, W // 8  # 6 x 20 cells: kernel k draws one cell of a 5 x 20 grid
        cls_prob = np.full((1, N, K), 0.01, np.float32)
        mask_logits = np.full((1, N, h, w), -10.0, np.float32)
        embed = np.zeros((1, Q, E), np.float32)
        cls_prob[0, Q, T] = 0.7  # road (stuff kernel 0) everywhere else
        mask_logits[0, Q] = 5.0
        for k in range(Q):
            cls_prob[0, k, 1] = 0.9  # car (model label 1 = train id 13)
            r, c = divmod(k, 20)
            mask_logits[0, k, r + 1, c] = 10.0
            basis = k if k < 2 else 2 + (self.t % 2) * NEW + (k - 2)
            embed[0, k, basis] = 8.0
        self.t += 1
        return {
            "cls_prob": cls_prob,
            "mask_logits": mask_logits,
            "cur_kernels": feeds["prev_kernels"],
            "track_embed": embed,
            "sem_logits": np.zeros((1, K, h, w), np.float32),
        }

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_pipeline_past_70000_tracks_decodes_and_never_reuses_a_live_id():
    trk = TrackerConfig(memo_tracklet_frames=1, memo_backdrop_frames=1)
    pipe = VideoPanopticPipeline(ChurnBackend(), CFG, PipelineConfig(tracker=trk))
    rgb = np.zeros((48, 160, 3), np.uint8)
    frames = -(-70_500 // NEW)
    max_id, stay_ids = 0, None
    for t in range(frames):
        before = {int(tid) + 1 for tid in pipe.tracker.live_ids}  # ids the tracker remembers
        f = pipe.step(rgb)
        div = f.label_divisor
        assert div == 65536
        np.testing.assert_array_equal(
            f.panoptic, f.semantic.astype(np.int32) * div + f.instance_ids
        )
        things = [s for s in f.segments if s.is_thing]
        ids = [s.track_id for s in sorted(things, key=lambda s: s.kernel_index)]
        assert len(ids) == Q and len(set(ids)) == Q and min(ids) >= 1
        if stay_ids is None:
            stay_ids = ids[:2]
        assert ids[:2] == stay_ids, f"frame {t}: a staying object changed id"
        assert not set(ids[2:]) & before, f"frame {t}: a new track got a remembered id"
        max_id = max(max_id, max(ids))
    assert pipe.tracker.num_tracks >= 70_000
    assert max_id == MAX_TRACK_ID  # the whole space was used, then recycled
    y, x = 12, 44  # the centre of kernel 5's object (cell 1, 5) in the last frame
    assert f.panoptic[y, x] // div == 13 and f.instance_ids[y, x] > 0
    assert f.panoptic[y, x] % div == f.instance_ids[y, x]
