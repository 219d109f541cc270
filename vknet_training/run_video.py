"""Offline run: video file or image folder -> KITTI-STEP panoptic PNGs + colour overlay video.

    python training/run_video.py --checkpoint m.pt --input drive.mp4 --output out/
    python training/run_video.py --checkpoint m.pt --input frames/ --output out/ --device cuda

Writes ``out/panoptic/<name>_panoptic.png`` (R = semantic train id, G * 256 + B = track id, the
KITTI-STEP format) and ``out/overlay.mp4`` (track ids keep their colour across frames). Image
folders are read in name order; KITTI-STEP names ``{seq:06d}_{frame:06d}_leftImg8bit.png`` keep
their stem and the tracker restarts at every new sequence. Video frames are named
``{seq:06d}_{frame:06d}`` with ``--sequence`` (default 0).
"""
from __future__ import annotations

import argparse
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.postprocess.panoptic import MergeConfig
from vknet_core.preprocess import PreprocessConfig
from vknet_core.types import PanopticFrame
from vknet_core.visualize import class_palette, overlay

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
_KITTI_NAME = re.compile(r"^(\d{6})_(\d{6})_leftImg8bit$")


@dataclass
class RunSummary:
    frames: int
    png_dir: Path
    video: Optional[Path]
    seconds: float
    mean_ms: dict[str, float] = field(default_factory=dict)  # per pipeline stage


def kitti_step_png(frame: PanopticFrame) -> np.ndarray:
    """[H, W, 3] uint8 RGB: R = semantic train id, G = track id // 256, B = track id % 256."""
    out = np.empty(frame.semantic.shape + (3,), np.uint8)
    out[..., 0] = frame.semantic
    out[..., 1] = frame.instance_ids >> 8
    out[..., 2] = frame.instance_ids & 255
    return out


def iter_frames(source: Path, sequence: int = 0) -> tuple[Iterator[tuple[str, str, np.ndarray]],
                                                           Optional[int], Optional[float]]:
    """(iterator of (sequence key, output stem, rgb uint8 [H,W,3]), frame count, video fps)."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {source}")

        def gen_images() -> Iterator[tuple[str, str, np.ndarray]]:
            for p in files:
                bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise ValueError(f"cannot read image {p}")
                m = _KITTI_NAME.match(p.stem)
                seq = m.group(1) if m else ""
                stem = f"{m.group(1)}_{m.group(2)}" if m else p.stem
                yield seq, stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        return gen_images(), len(files), None
    if not source.is_file():
        raise FileNotFoundError(f"input {source} is neither an image folder nor a video file")
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {source} (OpenCV has no decoder for it?)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or None

    def gen_video() -> Iterator[tuple[str, str, np.ndarray]]:
        try:
            i = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield "", f"{sequence:06d}_{i:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                i += 1
        finally:
            cap.release()

    return gen_video(), count, fps


def run_pipeline(pipeline: VideoPanopticPipeline, source: Path, output: Path,
                 write_video: bool = True, fps: Optional[float] = None,
                 max_frames: Optional[int] = None, sequence: int = 0,
                 alpha: float = 0.5, progress: bool = True) -> RunSummary:
    """Run any pipeline (any backend) over ``source`` and write PNGs (+ overlay video)."""
    frames, count, src_fps = iter_frames(Path(source), sequence)
    png_dir = Path(output) / "panoptic"
    png_dir.mkdir(parents=True, exist_ok=True)
    video_path = Path(output) / "overlay.mp4" if write_video else None
    fps = fps or src_fps or 10.0
    palette = class_palette(pipeline.model_cfg.labels.num_classes)
    total = min(count, max_frames) if (count and max_frames) else (count or max_frames)
    writer = None
    sums: dict[str, float] = {}
    n = 0
    last_seq: Optional[str] = None
    t0 = time.perf_counter()
    pipeline.reset()
    try:
        for seq, stem, rgb in tqdm(frames, total=total, disable=not progress, unit="frame",
                                   desc="run_video"):
            if max_frames is not None and n >= max_frames:
                break
            if last_seq is not None and seq != last_seq:
                pipeline.reset()  # new KITTI-STEP sequence: fresh kernels and track ids
            last_seq = seq
            frame = pipeline.step(rgb)
            for k, v in pipeline.last_timings.items():
                sums[k] = sums.get(k, 0.0) + v
            png = kitti_step_png(frame)
            if not cv2.imwrite(str(png_dir / f"{stem}_panoptic.png"), png[..., ::-1]):
                raise OSError(f"could not write {png_dir / (stem + '_panoptic.png')}")
            if video_path is not None:
                vis = overlay(rgb, frame, alpha, palette)
                if writer is None:
                    h, w = vis.shape[:2]
                    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                             fps, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"OpenCV cannot write mp4v video {video_path}")
                if vis.shape[:2] != (h, w):
                    vis = cv2.resize(vis, (w, h), interpolation=cv2.INTER_NEAREST)
                writer.write(np.ascontiguousarray(vis[..., ::-1]))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        raise ValueError(f"no frames read from {source}")
    return RunSummary(frames=n, png_dir=png_dir, video=video_path,
                      seconds=time.perf_counter() - t0,
                      mean_ms={k: 1000.0 * v / n for k, v in sums.items()})


def run_video(checkpoint: Path, source: Path, output: Path, device: str = "cpu",
              cfg: PipelineConfig = PipelineConfig(), **kwargs) -> RunSummary:
    """Checkpoint -> PyTorch pipeline -> ``run_pipeline`` (kwargs as there)."""
    pipeline = VideoPanopticPipeline.from_checkpoint(checkpoint, device=device, cfg=cfg)
    try:
        return run_pipeline(pipeline, source, output, **kwargs)
    finally:
        pipeline.close()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="vknet checkpoint (.pt)")
    p.add_argument("--input", type=Path, required=True, help="video file or image folder")
    p.add_argument("--output", type=Path, required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--net-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="network input size (multiples of 32); default: the frame padded to 32")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--sequence", type=int, default=0, help="sequence number in video PNG names")
    g = p.add_argument_group("output")
    g.add_argument("--no-video", action="store_true", help="write PNGs only")
    g.add_argument("--fps", type=float, default=None, help="overlay fps (default: source or 10)")
    g.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight 0..1")
    g = p.add_argument_group("post-processing")
    g.add_argument("--instance-score-thr", type=float, default=0.25, help="thing score threshold")
    g.add_argument("--overlap-thr", type=float, default=0.6, help="owned/visible area threshold")
    g.add_argument("--void-as-road", action="store_true",
                   help="write void pixels as train id 0, like the official export")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = PipelineConfig(
        preprocess=PreprocessConfig(net_hw=tuple(args.net_size) if args.net_size else None),
        merge=MergeConfig(instance_score_thr=args.instance_score_thr,
                          overlap_thr=args.overlap_thr, void_as_road=args.void_as_road),
    )
    s = run_video(args.checkpoint, args.input, args.output, args.device, cfg,
                  write_video=not args.no_video, fps=args.fps, max_frames=args.max_frames,
                  sequence=args.sequence, alpha=args.alpha)
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in s.mean_ms.items())
    print(f"{s.frames} frames in {s.seconds:.1f} s -> {s.png_dir}"
          + (f", {s.video}" if s.video else "") + f"\nmean per frame: {stages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
