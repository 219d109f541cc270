"""Benchmark: post-processing (merge + boxes + tracker + maps) next to the network, as a ratio.

    python scripts/bench_postprocess.py                      # CPU, camera 375x1242, net 384x1248
    python scripts/bench_postprocess.py --threads 1 --frames 12

Runs the real ``VideoPanopticPipeline`` with the shipped tiny model
(``vknet_ros/models/tiny_synthetic.pt``) through ``TorchBackend`` on the project's synthetic street
frames (``vknet_core.synthetic_scene``) at camera 375x1242, letterboxed into a 384x1248
network input, so the padding crop is exercised. Network and post-processing alternate frame by
frame, so both see the same machine load; the ratio of their medians is the figure to compare.
In the same run it times ``QuasiDenseTracker.update`` with 100 live tracks x 100 detections
with embeddings. ``TorchBackend`` is what the node runs (BatchNorm folded, C-order outputs).
Not a test: the numbers depend on the machine. The JSON last line holds every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vknet_core.checkpoint import load_checkpoint
from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.preprocess import PreprocessConfig
from vknet_core.runtime import ROBOT_TORCH_THREADS, TorchBackend
from vknet_core.synthetic_scene import make_sequence
from vknet_core.tracking.tracker import QuasiDenseTracker

TINY = Path(__file__).resolve().parents[1] / "vknet_ros" / "models" / "tiny_synthetic.pt"


class TrackerLoad:
    """100 objects drifting in a 375x1242 frame: n boxes, scores, labels, E-dim embeddings."""

    def __init__(self, n: int = 100, embed_dim: int = 256, seed: int = 0):
        rng = np.random.default_rng(seed)
        gy, gx = np.divmod(np.arange(n), 20)  # a 5 x 20 grid of 50 x 50 boxes: no overlaps
        self.xy = np.stack([gx * 62.0, gy * 75.0], 1).astype(np.float32)
        self.embeds = rng.normal(size=(n, embed_dim)).astype(np.float32)
        self.scores = rng.uniform(0.4, 0.95, n).astype(np.float32)
        self.labels = (np.arange(n) % 2).astype(np.int64)
        self.rng = rng

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        xy = self.xy + np.float32(t % 5)
        boxes = np.concatenate([xy, xy + 50.0], 1).astype(np.float32)
        noise = self.rng.normal(scale=0.05, size=self.embeds.shape).astype(np.float32)
        return boxes, self.scores, self.labels, self.embeds + noise


def bench(
    camera_hw: tuple[int, int] = (375, 1242),
    net_hw: tuple[int, int] = (384, 1248),
    frames: int = 12,
    warmup: int = 2,
    tracker_updates: int = 20,
    model_path: Path = TINY,
) -> dict[str, float]:
    """Median milliseconds per frame and the ratios; see the module docstring."""
    model = load_checkpoint(model_path)
    pcfg = PipelineConfig(preprocess=PreprocessConfig(net_hw=net_hw))
    pipe = VideoPanopticPipeline(TorchBackend(model, "cpu"), model.cfg, pcfg)
    seq = make_sequence(np.random.default_rng(0), warmup + frames, *camera_hw)
    load = TrackerLoad(embed_dim=model.cfg.video.embed_channels)
    tracker = QuasiDenseTracker()
    tracker.update(*load.frame(0))
    assert tracker.num_live == 100, tracker.num_live
    net, merge, maps, track, segs, things = [], [], [], [], [], []
    for i, (rgb, _) in enumerate(seq):
        frame = pipe.step(rgb)
        times = []
        for t in range(tracker_updates):
            args = load.frame(i * tracker_updates + t + 1)
            t0 = time.perf_counter()
            tracker.update(*args)
            times.append(time.perf_counter() - t0)
        if i < warmup:
            continue
        tm = pipe.last_timings
        net.append(tm["network"])
        merge.append(tm["merge"])
        maps.append(tm["tracker"])
        track.append(statistics.median(times))
        segs.append(len(frame.segments))
        things.append(sum(s.is_thing for s in frame.segments))
    pipe.close()
    if tracker.num_live != 100:
        raise RuntimeError(f"tracker load lost its tracks: {tracker.num_live} live, expected 100")
    post = [m + t for m, t in zip(merge, maps)]
    r = {
        "tiny_network_ms": 1e3 * statistics.median(net),
        "merge_boxes_ms": 1e3 * statistics.median(merge),
        "tracker_maps_ms": 1e3 * statistics.median(maps),
        "postprocess_ms": 1e3 * statistics.median(post),
        "tracker_100x100_ms": 1e3 * statistics.median(track),
    }
    r["ratio_post_to_network"] = r["postprocess_ms"] / r["tiny_network_ms"]
    r["tracker_pct_of_network"] = 100 * r["tracker_100x100_ms"] / r["tiny_network_ms"]
    r["segments"] = float(statistics.median(segs))
    r["thing_segments"] = float(statistics.median(things))
    r["frames"] = float(frames)
    r["threads"] = float(torch.get_num_threads())
    return r


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--camera-size",
        type=int,
        nargs=2,
        default=(375, 1242),
        metavar=("H", "W"),
        help="camera frame size (default 375 1242)",
    )
    p.add_argument(
        "--net-size",
        type=int,
        nargs=2,
        default=(384, 1248),
        metavar=("H", "W"),
        help="network input size (default 384 1248)",
    )
    p.add_argument("--frames", type=int, default=12, help="timed frames (default 12)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first (default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=ROBOT_TORCH_THREADS,
        help="torch CPU threads (default %(default)s, what the node runs; 0: torch's default)",
    )
    p.add_argument("--model", type=Path, default=TINY, help="checkpoint (default: shipped tiny)")
    args = p.parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.threads < 0:
        p.error(
            f"need --frames >= 1, --warmup >= 0, --threads >= 0; got {args.frames}, "
            f"{args.warmup}, {args.threads}"
        )
    if not args.model.is_file():
        p.error(f"--model {args.model} is not a file")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    r = bench(
        tuple(args.camera_size),
        tuple(args.net_size),
        args.frames,
        args.warmup,
        model_path=args.model,
    )
    print(
        f"tiny model {args.model.name}, camera {args.camera_size[0]}x{args.camera_size[1]}, "
        f"network {args.net_size[0]}x{args.net_size[1]}, {int(r['threads'])} threads, "
        f"{args.frames} frames, {r['segments']:.0f} segments ({r['thing_segments']:.0f} "
        "things)"
    )
    print(f"  merge + boxes        {r['merge_boxes_ms']:8.2f} ms")
    print(f"  tracker + maps       {r['tracker_maps_ms']:8.2f} ms")
    print(f"  post-processing      {r['postprocess_ms']:8.2f} ms")
    print(f"  tiny network         {r['tiny_network_ms']:8.2f} ms")
    print(f"  ratio post/network   {r['ratio_post_to_network']:8.3f}")
    print(
        f"  tracker 100x100      {r['tracker_100x100_ms']:8.3f} ms "
        f"({r['tracker_pct_of_network']:.2f}% of the network)"
    )
    print(json.dumps({k: round(v, 4) for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
