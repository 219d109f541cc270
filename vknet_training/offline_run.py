"""The offline run loop: frames in recorded order through the pipeline, tracks reset where
the node resets them, results to KITTI-STEP PNGs + overlay video and/or a result bag.

Used by ``run_video.py`` (the CLI); staged outputs are moved into place only at the end.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from tqdm import tqdm

from vknet_core import visualize
from vknet_core.atomic import fresh_output_dir
from vknet_core.cli import CliError
from vknet_core.image_encodings import labels_doc, output_arrays
from vknet_core.pipeline import VideoPanopticPipeline
from vknet_core.sequence_break import SequenceBreaks
from vknet_core.types import PanopticFrame
from vknet_training.bag_writer import (
    DEFAULT_NAMESPACE,
    IMAGE_OUTPUTS,
    ResultBagWriter,
    check_bag_out,
    check_namespace,
)
from vknet_training.frame_sources import FrameSource, open_source
from vknet_training.overlay_video import OverlayVideo

log = logging.getLogger(__name__)
PROG = "run_video.py"


@dataclass
class RunSummary:
    frames: int
    png_dir: Optional[Path]
    video: Optional[Path]
    seconds: float
    mean_ms: dict[str, float] = field(default_factory=dict)  # per pipeline stage
    bag: Optional[Path] = None
    bag_messages: int = 0
    video_codec: str = ""
    resets: int = 0
    source: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        out = []
        if self.bag is not None:
            out.append(f"bag {self.bag} ({self.bag_messages} messages)")
        if self.png_dir is not None:
            out.append(f"{self.png_dir}")
        if self.video is not None:
            out.append(f"{self.video} ({self.video_codec})")
        return (
            f"{self.frames} frames from {self.source} in {self.seconds:.1f} s "
            f"({self.fps:.1f} fps), {self.resets} track resets -> " + ", ".join(out)
        )


def kitti_step_png(frame: PanopticFrame) -> np.ndarray:
    """[H, W, 3] uint8 RGB: R = semantic train id, G = track id // 256, B = track id % 256."""
    out = np.empty(frame.semantic.shape + (3,), np.uint8)
    out[..., 0] = frame.semantic
    out[..., 1] = frame.instance_ids >> 8
    out[..., 2] = frame.instance_ids & 255
    return out


def _labels(pipeline: VideoPanopticPipeline, frame: PanopticFrame, palette: np.ndarray) -> str:
    """The node's ``~/labels`` JSON; the divisor is the one this frame was encoded with."""
    lab = pipeline.model_cfg.labels
    return labels_doc(
        lab.class_names,
        lab.thing_train_ids,
        [tuple(int(c) for c in palette[i]) for i in range(lab.num_classes)],
        label_divisor=frame.label_divisor,
        ignore_label=lab.ignore_label,
    )


def check_options(
    output: Optional[Path],
    bag_out: Optional[Path],
    namespace: str,
    fps: Optional[float],
    max_frames: Optional[int],
    alpha: float,
) -> None:
    if output is None and bag_out is None:
        raise CliError(
            "nothing to write: give --output (PNGs + overlay video) and/or --bag-out (result bag)"
        )
    if bag_out is not None:
        check_bag_out(bag_out)
        check_namespace(namespace)
    if output is not None and output.exists() and not output.is_dir():
        raise CliError(f"--output {output} is a file; expected a folder")
    if fps is not None and fps <= 0:
        raise CliError(f"--fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise CliError(f"--max-frames must be >= 1, got {max_frames}")
    if not 0.0 <= alpha <= 1.0:
        raise CliError(f"--alpha must be within 0..1, got {alpha}")


def check_source(src: FrameSource, bag_out: Optional[Path]) -> None:
    if bag_out is not None and src.kind != "bag":
        raise CliError(
            f"--bag-out needs a bag as --input (each output copies its input "
            f"message's header and log time); got a {src.kind} source"
        )


def _publish(stage: Path, out: Path) -> None:
    """Move the staged ``panoptic/`` and ``overlay.mp4`` into ``out``; what an earlier run left
    there is replaced (an old video too when this run wrote none), so ``out`` is this run's."""
    png = out / "panoptic"
    if png.exists():
        png.rename(stage / "panoptic.old")  # removed with the stage
    (stage / "panoptic").rename(png)
    if (stage / "overlay.mp4").exists():
        (stage / "overlay.mp4").replace(out / "overlay.mp4")
    else:
        (out / "overlay.mp4").unlink(missing_ok=True)


def run_pipeline(
    pipeline: VideoPanopticPipeline,
    source: Union[Path, FrameSource],
    output: Optional[Path] = None,
    write_video: bool = True,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    sequence: int = 0,
    alpha: float = 0.5,
    progress: bool = True,
    topic: Optional[str] = None,
    bag_out: Optional[Path] = None,
    namespace: str = DEFAULT_NAMESPACE,
    bag_overlay: bool = False,
) -> RunSummary:
    """Run any pipeline over ``source`` (a path, or an opened ``FrameSource``); write PNGs and
    the overlay video under ``output`` and/or the result bag ``bag_out`` (bag inputs)."""
    output = Path(output) if output is not None else None
    bag_out = Path(bag_out) if bag_out is not None else None
    check_options(output, bag_out, namespace, fps, max_frames, alpha)
    src = source if isinstance(source, FrameSource) else open_source(Path(source), topic, sequence)
    with contextlib.ExitStack() as stack:
        stack.callback(src.close)
        check_source(src, bag_out)
        bag = stage = video = None
        if bag_out is not None:
            stack.enter_context(fresh_output_dir(bag_out.parent))
            outs = IMAGE_OUTPUTS if bag_overlay else IMAGE_OUTPUTS[:3]
            bag = stack.enter_context(ResultBagWriter(bag_out, src.typestore, namespace, outs))
        if output is not None:
            out = stack.enter_context(fresh_output_dir(output))
            stage = Path(tempfile.mkdtemp(prefix=".run_video.", suffix=".partial", dir=out))
            stack.callback(shutil.rmtree, stage, True)
            (stage / "panoptic").mkdir()
            if write_video:
                video = OverlayVideo(stage / "overlay.mp4", fps or src.fps or 10.0)
                stack.callback(video.close)
        s = _run_frames(pipeline, src, stage, video, bag, max_frames, alpha, progress)
        if bag is not None:
            s.bag, s.bag_messages = bag.finish(), bag.messages
        if stage is not None:
            if video is not None:
                video.close()
                s.video, s.video_codec = output / "overlay.mp4", video.codec_name
            _publish(stage, output)
            s.png_dir = output / "panoptic"
        return s


def _run_frames(
    pipeline: VideoPanopticPipeline,
    src: FrameSource,
    stage: Optional[Path],
    video: Optional[OverlayVideo],
    bag: Optional[ResultBagWriter],
    max_frames: Optional[int],
    alpha: float,
    progress: bool,
) -> RunSummary:
    import cv2

    palette = visualize.class_palette(pipeline.model_cfg.labels.num_classes)
    count = src.count
    total = min(count, max_frames) if (count and max_frames) else (count or max_frames)
    sums: dict[str, float] = {}
    n = resets = 0
    last_seq: Optional[str] = None
    breaks = SequenceBreaks()
    name = f"{src.kind} {getattr(src, 'topic', '')}".strip()
    t0 = time.perf_counter()
    pipeline.reset()
    bar = tqdm(total=total, disable=not progress, unit="frame", desc=name, dynamic_ncols=True)
    with bar:
        for f in src.frames():
            reason = breaks.check(f.stamp_ns, f.rgb.shape[:2])
            if last_seq is not None and f.sequence != last_seq:
                reason = f"new sequence {f.sequence}"
            last_seq = f.sequence
            if reason is not None:
                pipeline.reset()  # fresh kernels and track ids, as the node does
                resets += 1
                log.info("frame %s: %s: tracks reset", f.stem, reason)
            frame = pipeline.step(f.rgb)
            for k, v in pipeline.last_timings.items():
                sums[k] = sums.get(k, 0.0) + v
            vis = None
            if video is not None or (bag is not None and "overlay" in bag.outputs):
                vis = visualize.overlay(f.rgb, frame, alpha, palette)
            if bag is not None:
                if not bag.labels_written:
                    bag.write_labels(_labels(pipeline, frame, palette), f.log_time_ns)
                arrays = output_arrays(frame)
                if "overlay" in bag.outputs:
                    arrays["overlay"] = ("rgb8", vis)
                bag.write_frame(f.header, f.log_time_ns, arrays)
            if stage is not None:
                path = stage / "panoptic" / f"{f.stem}_panoptic.png"
                if not cv2.imwrite(str(path), kitti_step_png(frame)[..., ::-1]):
                    raise OSError(f"could not write {path}")
            if video is not None:
                video.write(vis)
            n += 1
            bar.update()
            if max_frames is not None and n >= max_frames:
                break  # before decoding another frame
    if n == 0:
        raise ValueError(f"no frames read from {name}")
    return RunSummary(
        frames=n,
        png_dir=None,
        video=None,
        seconds=time.perf_counter() - t0,
        mean_ms={k: 1000.0 * v / n for k, v in sums.items()},
        resets=resets,
        source=name,
    )
