"""The embedded default demo: a synthetic camera and ``vknet_node`` over real ROS 2 topics.

    python -m vknet_ros.demo --out out/demo            # what `make demo` runs

Three nodes in one process, talking through DDS like separate processes would:
  synthetic_camera  publishes street-scene frames (``vknet_core.synthetic_scene``) on ``image``
                    (sensor_msgs/Image rgb8, reliable, stamped with the publish time) at ``--rate``
  vknet_node        the real node with the shipped ``tiny`` model (PyTorch backend)
  demo_recorder     subscribes ``~/panoptic``, ``~/instance_ids`` and ``~/overlay``
Writes ``OUT/overlay.gif`` and ``overlay.mp4``,
``OUT/overlay/*.png``, ``OUT/panoptic/*.png`` (KITTI-STEP: R = class, G*256+B = track id) and
``OUT/summary.json``, and prints frames per second and latency (publish -> panoptic received).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    frames_published: int
    frames_segmented: int
    fps: float  # segmented frames per second of wall time (first to last output)
    latency_mean_ms: float  # camera publish -> panoptic received
    latency_p95_ms: float
    node_pipeline_mean_ms: float  # the node's own per-frame pipeline time (from its stats)
    tracks_seen: int
    longest_track_frames: int
    files: list[str] = field(default_factory=list)


def _synthetic_frames(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    from vknet_core.synthetic_scene import make_sequence

    return [rgb for rgb, _ in make_sequence(np.random.default_rng(seed), n, height, width)]


def _write_outputs(out: Path, records: list[dict[str, Any]], gif_fps: float) -> list[str]:
    import cv2
    import imageio.v2 as imageio

    from vknet_core.panoptic_io import encode_kitti_step

    files: list[str] = []
    (out / "overlay").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    overlays = []
    for i, r in enumerate(records):
        panoptic = r["semantic"].astype(np.int64) * 1000 + r["instance_ids"]
        cv2.imwrite(str(out / "panoptic" / f"{i:06d}.png"), encode_kitti_step(panoptic)[..., ::-1])
        if r.get("overlay") is not None:
            overlays.append(r["overlay"])
            cv2.imwrite(str(out / "overlay" / f"{i:06d}.png"), r["overlay"][:, :, ::-1])
    files += [str(out / "panoptic"), str(out / "overlay")]
    if overlays:
        imageio.mimsave(out / "overlay.gif", overlays, duration=1000.0 / gif_fps, loop=0)
        files.append(str(out / "overlay.gif"))
        h, w = overlays[0].shape[:2]
        writer = cv2.VideoWriter(
            str(out / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), gif_fps, (w, h)
        )
        if writer.isOpened():
            for vis in overlays:
                writer.write(np.ascontiguousarray(vis[..., ::-1]))
            writer.release()
            files.append(str(out / "overlay.mp4"))
        else:  # an OpenCV build without an MP4 writer: the GIF has the same frames
            log.info("no MP4 written (OpenCV cannot open an mp4v writer)")
    return files


def run_demo(
    out: Path,
    model: Optional[Path] = None,
    frames: int = 60,
    rate: float = 10.0,
    height: int = 192,
    width: int = 384,
    seed: int = 1234,
    backend: str = "torch",
    device: str = "cpu",
    timeout: float = 120.0,
) -> DemoResult:
    """Run camera + node + recorder for ``frames`` frames at ``rate`` Hz; write ``out``."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from vknet_ros.conversions import array_to_image, image_to_numpy
    from vknet_ros.node import VKNetNode
    from vknet_ros.run_node import autostart

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = _synthetic_frames(frames, height, width, seed)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    executor = MultiThreadedExecutor(num_threads=3, context=ctx)
    overrides = [
        Parameter("backend", value=backend),
        Parameter("device", value=device),
        Parameter("outputs.overlay", value=True),
    ]
    if model is not None:
        overrides.append(Parameter("model", value=str(model)))
    vk = VKNetNode(context=ctx, parameter_overrides=overrides)
    camera = rclpy.create_node("synthetic_camera", context=ctx)
    recorder = rclpy.create_node("demo_recorder", context=ctx)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = camera.create_publisher(Image, "image", reliable)
    lock = threading.Lock()
    by_stamp: dict[int, dict[str, Any]] = {}
    sent_at: dict[int, float] = {}

    def on(name: str):
        def cb(msg: Image) -> None:
            t = time.monotonic()
            key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            with lock:
                rec = by_stamp.setdefault(key, {})
                rec[name] = image_to_numpy(msg).copy()
                rec[f"{name}_t"] = t

        return cb

    topic = "/vknet_node/"
    for name in ("panoptic", "instance_ids", "semantic", "overlay"):
        recorder.create_subscription(Image, topic + name, on(name), reliable)
    for n in (vk, camera, recorder):
        executor.add_node(n)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        if not autostart(vk):
            raise RuntimeError("vknet_node did not activate (see the error above)")
        t_end = time.monotonic() + timeout
        while (
            pub.get_subscription_count() == 0 or vk._pubs["overlay"].get_subscription_count() == 0
        ):
            if time.monotonic() > t_end:
                raise TimeoutError("vknet_node and the camera did not discover each other")
            time.sleep(0.05)
        print(
            f"demo: publishing {frames} synthetic {width}x{height} frames at {rate:g} Hz "
            f"on {pub.topic_name}",
            flush=True,
        )
        period = 1.0 / rate
        t_next = time.monotonic()
        for rgb in images:
            header = Header(frame_id="synthetic_camera_optical")
            header.stamp = camera.get_clock().now().to_msg()
            key = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            with lock:
                sent_at[key] = time.monotonic()
            pub.publish(array_to_image(rgb, "rgb8", header))
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        last = max(sent_at)
        while time.monotonic() < t_end:  # the last frame is always served (latest-frame slot)
            with lock:
                if "panoptic" in by_stamp.get(last, {}) and "overlay" in by_stamp[last]:
                    break
            time.sleep(0.05)
        time.sleep(0.3)
        pipeline_ms = vk.stats.summary().get("pipeline_mean_ms", float("nan"))
    finally:
        executor.shutdown(timeout_sec=5.0)
        vk._teardown_active()
        for n in (vk, camera, recorder):
            n.destroy_node()
        rclpy.try_shutdown(context=ctx)
    with lock:
        records = [
            dict(by_stamp[k], stamp=k)
            for k in sorted(by_stamp)
            if "panoptic" in by_stamp[k] and "instance_ids" in by_stamp[k]
        ]
    if not records:
        raise RuntimeError("no segmented frames came back from vknet_node")
    lat = np.array([(r["panoptic_t"] - sent_at[r["stamp"]]) * 1e3 for r in records])
    t_out = np.array([r["panoptic_t"] for r in records])
    fps = (len(t_out) - 1) / (t_out[-1] - t_out[0]) if len(t_out) > 1 else float("nan")
    life: dict[int, int] = {}
    for r in records:
        for tid in np.unique(r["instance_ids"]):
            if tid:
                life[int(tid)] = life.get(int(tid), 0) + 1
    files = _write_outputs(out, records, gif_fps=min(rate, 10.0))
    result = DemoResult(
        frames_published=len(images),
        frames_segmented=len(records),
        fps=float(fps),
        latency_mean_ms=float(lat.mean()),
        latency_p95_ms=float(np.percentile(lat, 95)),
        node_pipeline_mean_ms=float(pipeline_ms),
        tracks_seen=len(life),
        longest_track_frames=max(life.values(), default=0),
        files=files,
    )
    (out / "summary.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model file (default: the shipped vknet_ros/models/tiny_synthetic.pt)",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime", "tensorrt"),
        help="inference backend",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--frames", type=int, default=60, help="frames the camera publishes")
    p.add_argument("--rate", type=float, default=10.0, help="camera rate [Hz]")
    p.add_argument("--height", type=int, default=192, help="camera image height")
    p.add_argument("--width", type=int, default=384, help="camera image width")
    p.add_argument(
        "--seed", type=int, default=1234, help="synthetic scene seed (held out from training)"
    )
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vknet_ros.params import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    if not Path(model).is_file():
        print(
            f"demo: model file not found: {model}\n"
            "  the shipped tiny model is trained by training/train.py (see training/RESULTS.md);"
            " pass --model PATH to use another checkpoint"
        )
        return 2
    r = run_demo(
        args.out,
        model,
        args.frames,
        args.rate,
        args.height,
        args.width,
        args.seed,
        args.backend,
        args.device,
    )
    print(
        f"demo: {r.frames_segmented}/{r.frames_published} frames segmented, "
        f"{r.fps:.1f} frames/s, latency publish->panoptic mean {r.latency_mean_ms:.1f} ms, "
        f"p95 {r.latency_p95_ms:.1f} ms (pipeline {r.node_pipeline_mean_ms:.1f} ms/frame); "
        f"{r.tracks_seen} tracks, longest {r.longest_track_frames} frames"
    )
    print(
        f"demo: wrote {args.out / 'overlay.gif'}, {args.out / 'overlay.mp4'}, "
        f"{args.out}/overlay/*.png, "
        f"{args.out}/panoptic/*.png (KITTI-STEP), {args.out / 'summary.json'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
