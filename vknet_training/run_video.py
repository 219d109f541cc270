"""Offline run: video, image folder or ROS 2 bag -> PNGs + overlay video and/or a result bag.

    python training/run_video.py --checkpoint m.pt --input drive.mp4 --output out/
    python training/run_video.py --checkpoint m.pt --input frames/ --output out/ --device cuda
    python training/run_video.py --checkpoint m.pt --input drive_bag --topic /cam/image_raw \\
        --bag-out out/drive_vknet                      # + --output out/drive for PNGs and video

``--output`` writes ``panoptic/<name>_panoptic.png`` (R = semantic train id, G * 256 + B = track
id, the KITTI-STEP format) and ``overlay.mp4`` (H.264 where OpenCV can encode it, else mp4v;
track ids keep their colour across frames). ``--bag-out`` (bag input) writes a rosbag2 folder
with MCAP storage holding what ``vknet_node`` publishes for the same frames: ``<ns>/labels``
once, then ``<ns>/panoptic`` (32SC1), ``instance_ids`` (16UC1), ``semantic`` (mono8) and with
``--bag-overlay`` ``overlay`` (rgb8), each with its input message's header and log time.
Frames are processed in recorded order, none dropped; tracks reset at a new KITTI-STEP sequence,
and like the node when a stamp goes back or the resolution changes. Nothing half-written is
left behind on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from vknet_core.cli import CliError, run_cli
from vknet_core.pipeline import PipelineConfig, VideoPanopticPipeline
from vknet_core.postprocess.panoptic import MergeConfig
from vknet_core.preprocess import PreprocessConfig
from vknet_training.bag_writer import (
    DEFAULT_NAMESPACE,
)
from vknet_training.frame_sources import open_source
from vknet_training.offline_run import RunSummary, check_options, check_source, run_pipeline

log = logging.getLogger(__name__)
PROG = "run_video.py"


def load_pipeline(
    checkpoint: Path, device: str = "cpu", cfg: Optional[PipelineConfig] = None
) -> VideoPanopticPipeline:
    """Checkpoint -> PyTorch pipeline, padded to the model's size divisor (as the node)."""
    import torch

    from vknet_core.checkpoint import load_checkpoint
    from vknet_core.runtime import TorchBackend

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} does not exist; expected a vknet "
            "checkpoint (.pt) written by training/train.py"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {device}: CUDA is not available on this machine; use cpu")
    model = load_checkpoint(checkpoint)
    cfg = cfg or PipelineConfig()
    pre = dataclasses.replace(cfg.preprocess, size_divisor=model.cfg.size_divisor)
    return VideoPanopticPipeline(
        TorchBackend(model, device), model.cfg, dataclasses.replace(cfg, preprocess=pre)
    )


def run_video(
    checkpoint: Path,
    source: Path,
    output: Optional[Path] = None,
    device: str = "cpu",
    cfg: Optional[PipelineConfig] = None,
    **kwargs,
) -> RunSummary:
    """Check the outputs and open the input, then checkpoint -> pipeline -> ``run_pipeline``
    (kwargs as there)."""
    check_options(
        Path(output) if output is not None else None,
        Path(kwargs["bag_out"]) if kwargs.get("bag_out") is not None else None,
        kwargs.get("namespace", DEFAULT_NAMESPACE),
        kwargs.get("fps"),
        kwargs.get("max_frames"),
        kwargs.get("alpha", 0.5),
    )
    src = open_source(Path(source), kwargs.pop("topic", None), kwargs.get("sequence", 0))
    try:
        check_source(src, kwargs.get("bag_out"))
        pipeline = load_pipeline(checkpoint, device, cfg)
    except BaseException:
        src.close()
        raise
    try:
        return run_pipeline(pipeline, src, output, **kwargs)
    finally:
        pipeline.close()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="vknet checkpoint (.pt)")
    p.add_argument(
        "--input",
        type=Path,
        required=True,
        help="video file, image folder, rosbag2 folder or .mcap file",
    )
    p.add_argument(
        "--output", type=Path, default=None, help="folder for panoptic/*.png and overlay.mp4"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--net-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="network input size (multiples of 32); default: the frame padded to 32",
    )
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument(
        "--sequence", type=int, default=0, help="sequence number in video / bag PNG names"
    )
    g = p.add_argument_group("ROS 2 bags")
    g.add_argument(
        "--topic",
        default=None,
        help="image topic (sensor_msgs/Image or "
        "CompressedImage); required when the bag has several",
    )
    g.add_argument(
        "--bag-out",
        type=Path,
        default=None,
        help="write the node's outputs to this new rosbag2 folder (MCAP)",
    )
    g.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"topic prefix in --bag-out (default {DEFAULT_NAMESPACE}, the node's)",
    )
    g.add_argument(
        "--bag-overlay",
        action="store_true",
        help="also write <namespace>/overlay (rgb8) to --bag-out",
    )
    g = p.add_argument_group("output")
    g.add_argument("--no-video", action="store_true", help="write PNGs only")
    g.add_argument("--fps", type=float, default=None, help="overlay fps (default: source or 10)")
    g.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight 0..1")
    g = p.add_argument_group("post-processing")
    g.add_argument("--instance-score-thr", type=float, default=0.25, help="thing score threshold")
    g.add_argument("--overlap-thr", type=float, default=0.6, help="owned/visible area threshold")
    g.add_argument(
        "--void-as-road",
        action="store_true",
        help="write void pixels as train id 0, like the official export",
    )
    return p.parse_args(argv)


def _net_hw(size: Optional[Sequence[int]]) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    if any(v <= 0 or v % 32 for v in size):
        raise CliError(f"--net-size {size[0]} {size[1]}: expected positive multiples of 32")
    return (int(size[0]), int(size[1]))


def _run(args: argparse.Namespace) -> int:
    cfg = PipelineConfig(
        preprocess=PreprocessConfig(net_hw=_net_hw(args.net_size)),
        merge=MergeConfig(
            instance_score_thr=args.instance_score_thr,
            overlap_thr=args.overlap_thr,
            void_as_road=args.void_as_road,
        ),
    )
    s = run_video(
        args.checkpoint,
        args.input,
        args.output,
        args.device,
        cfg,
        write_video=not args.no_video,
        fps=args.fps,
        max_frames=args.max_frames,
        sequence=args.sequence,
        alpha=args.alpha,
        topic=args.topic,
        bag_out=args.bag_out,
        namespace=args.namespace,
        bag_overlay=args.bag_overlay,
    )
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in s.mean_ms.items())
    print(f"{s.line()}\nmean per frame: {stages}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(PROG, lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
