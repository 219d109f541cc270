"""Benchmark: post-processing (merge + boxes + tracker) next to the network, as a ratio.

    python scripts/bench_postprocess.py                    # CPU, 384x1248, 117 kernels vs tiny
    python scripts/bench_postprocess.py --device cuda

Post-processing runs the real ``VideoPanopticPipeline`` code on synthetic outputs of the full
KITTI-STEP head (N = 117 kernels, K = 19, 384x1248 input, camera 375x1242 so the padding crop
is exercised, a dozen moving things). The network time is the ``tiny`` preset's per-frame step
at the same size through ``TorchBackend``. Not a test: the numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Optional, Sequence

import numpy as np
import torch

import vknet_core
from vknet_core.config import kitti_step_r50
from vknet_core.io_spec import io_spec
from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.preprocess import PreprocessConfig
from vknet_core.runtime import TorchBackend


class SyntheticHeadBackend:
    """Backend protocol with the full head's output shapes: moving rectangles as things."""

    def __init__(self, net_hw: tuple[int, int], num_things: int = 12, seed: int = 0):
        cfg = kitti_step_r50()
        self.name, self.device, self.cfg = "synthetic-head", torch.device("cpu"), cfg
        self.spec = io_spec(cfg, net_hw[0], net_hw[1])  # vknet_core.backend.Backend
        self.N, self.K = cfg.num_kernels, cfg.labels.num_classes
        self.Q = cfg.head.num_thing_kernels
        self.C, self.E, self.T = cfg.neck.channels, cfg.video.embed_channels, cfg.labels.num_things
        self.h, self.w = net_hw[0] // 8, net_hw[1] // 8
        self.rng = np.random.default_rng(seed)
        self.num_things = num_things
        self.embed = self.rng.normal(size=(1, self.Q, self.E)).astype(np.float32) * 0.3
        self.t = 0

    def step(self, feeds):
        rng, h, w, t = self.rng, self.h, self.w, self.t
        self.t += 1
        cls = (rng.random((1, self.N, self.K), dtype=np.float32) ** 4) * 0.3
        masks = rng.normal(-4.0, 1.0, (1, self.N, h, w)).astype(np.float32)
        sem = rng.normal(0.0, 1.0, (1, self.K, h, w)).astype(np.float32)
        for j in range(self.K - self.T):  # stuff in horizontal bands
            cls[0, self.Q + j, self.T + j] = 0.3 + 0.6 * rng.random()
            y0 = (j * h) // (self.K - self.T)
            masks[0, self.Q + j, y0:y0 + max(3, h // 6)] += 9.0
        for i in range(self.num_things):
            k = 7 * i % self.Q
            cls[0, k, i % self.T] = 0.5 + 0.4 * (i + 1) / self.num_things
            y0, x0 = 4 + (5 * i) % (h - 12), (11 * i + 2 * t) % (w - 12)
            masks[0, k, y0:y0 + 8, x0:x0 + 10] += 12.0
            sem[0, i % self.T, y0:y0 + 8, x0:x0 + 10] += 6.0
        return {"cls_prob": cls, "mask_logits": masks,
                "cur_kernels": np.zeros((1, self.N, self.C), np.float32),
                "track_embed": self.embed, "sem_logits": sem}

    def close(self) -> None:
        pass


def bench(net_hw: tuple[int, int] = (384, 1248), camera_hw: tuple[int, int] = (375, 1242),
          device: str = "cpu", runs: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds: post-processing (merge, tracker, sum) and the tiny network."""
    rgb = np.random.default_rng(0).integers(0, 255, camera_hw + (3,), dtype=np.uint8)
    pcfg = PipelineConfig(preprocess=PreprocessConfig(net_hw=net_hw), device=device)
    pipe = VideoPanopticPipeline(SyntheticHeadBackend(net_hw), kitti_step_r50(), pcfg)
    merge, track = [], []
    for i in range(warmup + runs):
        frame = pipe.step(rgb)
        if i >= warmup:
            merge.append(pipe.last_timings["merge"])
            track.append(pipe.last_timings["tracker"])
    n_things = sum(s.is_thing for s in frame.segments)

    torch.manual_seed(0)
    model = vknet_core.build_model("tiny").eval()
    backend = TorchBackend(model, device)
    prev, has = (x.cpu().numpy() for x in model.initial_state(1))
    image = np.zeros((1, *net_hw, 3), np.uint8)
    image[0, : camera_hw[0], : camera_hw[1]] = rgb
    net = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        out = backend.step({"image": image, "prev_kernels": prev, "has_prev": has})
        if i >= warmup:
            net.append(time.perf_counter() - t0)
        prev, has = out["cur_kernels"], np.ones((1,), np.float32)
    backend.close()
    ms = {"merge_ms": 1e3 * statistics.median(merge), "tracker_ms": 1e3 * statistics.median(track),
          "tiny_network_ms": 1e3 * statistics.median(net)}
    ms["postprocess_ms"] = ms["merge_ms"] + ms["tracker_ms"]
    ms["ratio_post_to_network"] = ms["postprocess_ms"] / ms["tiny_network_ms"]
    ms["thing_segments"] = float(n_things)
    ms["segments"] = float(len(frame.segments))
    return ms


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device for network and merge")
    p.add_argument("--net-size", type=int, nargs=2, default=(384, 1248), metavar=("H", "W"),
                   help="network input size")
    p.add_argument("--camera-size", type=int, nargs=2, default=(375, 1242), metavar=("H", "W"),
                   help="camera frame size (cropped back to after the merge)")
    p.add_argument("--runs", type=int, default=10, help="timed frames")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    r = bench(tuple(args.net_size), tuple(args.camera_size), args.device, args.runs, args.warmup)
    print(f"device {args.device}, input {args.net_size[0]}x{args.net_size[1]}, camera "
          f"{args.camera_size[0]}x{args.camera_size[1]}, 117 kernels, "
          f"{int(r['segments'])} segments ({int(r['thing_segments'])} things)")
    print(f"  merge + boxes     {r['merge_ms']:8.1f} ms")
    print(f"  tracker + maps    {r['tracker_ms']:8.1f} ms")
    print(f"  post-processing   {r['postprocess_ms']:8.1f} ms")
    print(f"  tiny network      {r['tiny_network_ms']:8.1f} ms")
    print(f"  ratio post/network {r['ratio_post_to_network']:7.2f}")
    print(json.dumps({k: round(v, 3) for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
