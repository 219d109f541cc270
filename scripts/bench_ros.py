"""ROS-side overhead of vknet_node: end-to-end latency vs the pipeline and backend alone.

    python scripts/bench_ros.py                                  # tiny model, 384x1248, CPU
    python scripts/bench_ros.py --model r50.pt --device cuda --frames 50
    python scripts/bench_ros.py --backend onnxruntime --model tiny.onnx
    python scripts/bench_ros.py --hd --frames 5     # 640x480 .. 3840x2160: latency, peak RSS

1. In this process, the same frames go through ``VideoPanopticPipeline.step`` alone (backend
   time = the network step, pipeline time = preprocess + network + merge + tracker).
2. ``python -m vknet_ros`` runs as its own process (a real deployment, ``input.qos:=reliable``
   because best-effort multi-megabyte frames can be lost on a loaded loopback); this process
   publishes
   each frame on ``image`` (rgb8, reliable) and waits for ``~/panoptic`` with the same stamp
   before sending the next (closed loop: no frame is dropped, nothing queues).
End-to-end = publish -> panoptic received (one monotonic clock). ROS overhead =
e2e / pipeline - 1 (transport, conversion, encoding, publishing). The goal is <= 15 % at 384x1248.
``--hd``: only step 2, in a fresh node process per camera size (640x480, 1280x720, 1920x1080,
3840x2160, default parameters: the network size is bounded by the model's native size), with the
node's end-to-end latency and its peak RSS (VmHWM). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {
        "mean": float(a.mean()),
        "p50": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "min": float(a.min()),
    }


def bench_pipeline(
    model: Path, backend: str, device: str, frames: list[np.ndarray], warmup: int
) -> dict[str, dict[str, float]]:
    """The pipeline alone on ``frames``: {"backend": stats_ms, "pipeline": stats_ms}."""
    from vknet_ros.loader import load_pipeline
    from vknet_ros.params import NodeParams

    loaded = load_pipeline(NodeParams(backend=backend, model=str(model), device=device).validate())
    pipe = loaded.pipeline
    try:
        for rgb in frames[:warmup]:
            pipe.step(rgb)
        pipe.reset()
        net, total = [], []
        for rgb in frames:
            t0 = time.perf_counter()
            pipe.step(rgb)
            total.append((time.perf_counter() - t0) * 1e3)
            net.append(pipe.last_timings["network"] * 1e3)
    finally:
        loaded.close()
    return {"backend": _stats(net), "pipeline": _stats(total)}


def bench_node(
    model: Path,
    backend: str,
    device: str,
    frames: list[np.ndarray],
    warmup: int,
    resend_after: float = 10.0,
    timeout: float = 120.0,
    input_qos: str = "reliable",
    extra_params: tuple[str, ...] = (),
) -> dict[str, Any]:
    """vknet_node in its own process, closed loop over ``frames`` (after ``warmup`` frames)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from vknet_ros.conversions import array_to_image
    from vknet_ros.diagnostics import status_values
    from vknet_ros.run_node import node_command

    ns = f"/bench_{os.getpid()}"
    log_file = open(
        Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_ros_node_{os.getpid()}.log", "w"
    )
    proc = subprocess.Popen(
        node_command(
            ns,
            [
                f"model:={model}",
                f"backend:={backend}",
                f"device:={device}",
                "outputs.overlay:=false",
                "warmup:=false",
                f"input.qos:={input_qos}",
                *extra_params,
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        text=True,
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_ros", namespace=ns, context=ctx)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, "image", qos)
    got: dict[int, float] = {}
    diag: list[dict[str, str]] = []
    cond = threading.Condition()

    def on_panoptic(msg: Image) -> None:
        with cond:
            got[msg.header.stamp.sec] = time.monotonic()
            cond.notify_all()

    node.create_subscription(Image, "vknet_node/panoptic", on_panoptic, qos)
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: diag.extend(
            status_values(s) for s in m.status if ns.strip("/") in s.hardware_id
        ),
        10,
    )
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    e2e: list[float] = []
    try:
        end = time.monotonic() + timeout
        while pub.get_subscription_count() == 0:
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"vknet_node did not start; its log: {log_file.name}")
            time.sleep(0.05)
        seq = [frames[i % len(frames)] for i in range(warmup)] + list(frames)
        stamp, lost = 0, 0
        for i, rgb in enumerate(seq):
            for _attempt in range(5):  # best-effort input: a lost frame is sent again
                stamp += 1
                header = Header(frame_id="bench")
                header.stamp.sec = stamp
                msg = array_to_image(rgb, "rgb8", header)
                t0 = time.monotonic()
                pub.publish(msg)
                with cond:
                    if cond.wait_for(lambda s=stamp: s in got, timeout=resend_after):
                        break
                lost += 1
            else:
                raise TimeoutError(
                    f"no panoptic output for frame {i} after 5 tries; node log: {log_file.name}"
                )
            if i >= warmup:
                e2e.append((got[stamp] - t0) * 1e3)
        time.sleep(1.5)  # one more diagnostics period
        with open(f"/proc/{proc.pid}/status") as f:
            peak_mib = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        ex.shutdown(timeout_sec=5.0)
        spin.join(timeout=5.0)  # no executor thread left running at interpreter exit
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    stages = {
        k: float(v)
        for k, v in (diag[-1] if diag else {}).items()
        if k.endswith("_mean_ms") and not k.startswith("latency")
    }
    return {
        "e2e": _stats(e2e),
        "node_stages_mean_ms": stages,
        "frames_resent": lost,
        "peak_rss_mib": peak_mib,
    }


HD_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (720, 1280), (1080, 1920), (2160, 3840))


def bench_hd(
    model: Path, backend: str = "torch", device: str = "cpu", frames: int = 5, warmup: int = 1
) -> list[dict[str, Any]]:
    """The node at each camera size in ``HD_SIZES`` (fresh process each): e2e and peak RSS."""
    from vknet_core.synthetic_scene import make_sequence

    rows = []
    for h, w in HD_SIZES:
        clip = [rgb for rgb, _ in make_sequence(np.random.default_rng(3), frames, h, w)]
        r = bench_node(model, backend, device, clip, warmup, resend_after=60.0, timeout=300.0)
        rows.append(
            {
                "size": [h, w],
                "e2e_ms": r["e2e"],
                "peak_rss_mib": r["peak_rss_mib"],
                "node_stages_mean_ms": r["node_stages_mean_ms"],
            }
        )
        print(
            f"  {w}x{h}: e2e {r['e2e']['mean']:.0f} ms (p50 {r['e2e']['p50']:.0f}), peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB; node stages "
            + ", ".join(f"{k[:-8]} {v:.0f}" for k, v in r["node_stages_mean_ms"].items()),
            flush=True,
        )
    return rows


def bench_ros(
    model: Path,
    backend: str = "torch",
    device: str = "cpu",
    height: int = 384,
    width: int = 1248,
    frames: int = 30,
    warmup: int = 5,
) -> dict[str, Any]:
    """Both measurements on the same synthetic frames; returns the report dict."""
    from vknet_core.synthetic_scene import make_sequence

    clip = [rgb for rgb, _ in make_sequence(np.random.default_rng(3), frames, height, width)]
    alone = bench_pipeline(model, backend, device, clip, warmup)
    resend = max(1.0, 10 * alone["pipeline"]["p95"] / 1e3)
    node = bench_node(model, backend, device, clip, warmup, resend_after=resend)
    e2e, pipe, net = node["e2e"]["mean"], alone["pipeline"]["mean"], alone["backend"]["mean"]
    return {
        "model": str(model),
        "backend": backend,
        "device": device,
        "size": [height, width],
        "frames": frames,
        "backend_ms": alone["backend"],
        "pipeline_ms": alone["pipeline"],
        "e2e_ms": node["e2e"],
        "node_stages_mean_ms": node["node_stages_mean_ms"],
        "frames_resent": node["frames_resent"],
        "ros_overhead_ratio": e2e / pipe - 1.0,
        "e2e_over_backend_ratio": e2e / net - 1.0,
        "goal_ratio": 0.15,
    }


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    from vknet_ros.params import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model file")
    p.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime", "tensorrt"),
        help="inference backend",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--height", type=int, default=384, help="camera height")
    p.add_argument("--width", type=int, default=1248, help="camera width")
    p.add_argument("--frames", type=int, default=30, help="measured frames")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured frames first")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument(
        "--hd",
        action="store_true",
        help="camera sizes 640x480 .. 3840x2160 through the node: latency and peak RSS",
    )
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    if not a.model.is_file():
        print(f"bench_ros: model file not found: {a.model} (pass --model)")
        return 2
    if a.hd:
        print(f"vknet_node {a.backend}/{a.device}, {a.frames} frames per size, closed loop:")
        rows = bench_hd(a.model, a.backend, a.device, a.frames, a.warmup)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=2))
        print(json.dumps(rows))
        return 0
    r = bench_ros(a.model, a.backend, a.device, a.height, a.width, a.frames, a.warmup)
    print(f"vknet_node {a.backend}/{a.device} at {a.width}x{a.height}, {a.frames} frames:")
    for key, label in (("backend_ms", "backend alone"), ("pipeline_ms", "pipeline alone")):
        print(f"  {label:<18} {r[key]['mean']:8.1f} ms  (p95 {r[key]['p95']:.1f})")
    print(f"  ROS end-to-end     {r['e2e_ms']['mean']:8.1f} ms  (p95 {r['e2e_ms']['p95']:.1f})")
    print(
        "  node stages (mean) "
        + ", ".join(f"{k[:-8]} {v:.1f}" for k, v in r["node_stages_mean_ms"].items())
    )
    print(
        f"  ROS overhead: {100 * r['ros_overhead_ratio']:.1f} % of the pipeline time "
        f"(goal <= 15 %); e2e vs backend alone: +{100 * r['e2e_over_backend_ratio']:.1f} %"
    )
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
