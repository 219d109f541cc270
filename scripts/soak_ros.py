"""Soak test of vknet_node: N minutes at R Hz on synthetic street scenes, checking every output.

    python scripts/soak_ros.py --minutes 30 --rate 30 --width 384 --height 192
    python scripts/soak_ros.py --minutes 2 --model m.pt --backend onnxruntime --json soak.json

``python -m vknet_ros`` runs as its own process (the shipped tiny model unless ``--model``, the
node's default parameters unless ``-p name:=value``). This process plays a camera: it publishes
``image`` (rgb8, reliable publisher as REP-2003 asks of drivers) at ``--rate`` Hz with the wall
time as stamp, cycling through a synthetic sequence whose cars and people enter and leave the view
(``vknet_training.make_synthetic``; a new seed each cycle), and subscribes to ``~/panoptic``,
``~/semantic``, ``~/instance_ids``, ``~/labels`` and ``/diagnostics``.

Per frame with all three outputs: panoptic == semantic * divisor + instance (divisor from
``~/labels``), instance ids only on thing classes. Every minute: outputs/s, node drops, RSS.
At the end: rate, drops, RSS start (after the first minute) / end / slope (least squares over the
samples after the first minute), peak RSS, the maximum track id, and the mismatch count.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run as a file from a checkout
    sys.path.insert(0, str(_ROOT))


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0]) / 1024.0
    return vals["VmRSS"], vals["VmHWM"]


class Checker:
    """Collects the three outputs per stamp and checks each complete triple once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[int, dict[str, np.ndarray]] = {}
        self.divisor: Optional[int] = None
        self.thing_ids: set[int] = set()
        self.checked = 0
        self.mismatches = 0
        self.first_mismatch = ""
        self.max_id = 0
        self.ids_seen: set[int] = set()
        self.outputs = 0
        self.last_stamp = 0

    def add(self, name: str, stamp: int, arr: np.ndarray) -> None:
        with self.lock:
            slot = self.pending.setdefault(stamp, {})
            slot[name] = arr
            if name == "panoptic":
                self.outputs += 1
                self.last_stamp = max(self.last_stamp, stamp)
            if len(slot) == 3 and self.divisor is not None:
                self._check(stamp, self.pending.pop(stamp))
            if len(self.pending) > 300:  # incomplete triples (a lost message): forget old ones
                for s in sorted(self.pending)[:100]:
                    del self.pending[s]

    def _check(self, stamp: int, d: dict[str, np.ndarray]) -> None:
        pan = d["panoptic"].astype(np.int64)
        sem = d["semantic"].astype(np.int64)
        inst = d["instance_ids"].astype(np.int64)
        div = self.divisor
        ok = (
            np.array_equal(pan, sem * div + inst)
            and np.array_equal(pan // div, sem)
            and np.array_equal(pan % div, inst)
        )
        on_stuff = inst[~np.isin(sem, list(self.thing_ids))]
        ok = ok and not on_stuff.any()
        self.checked += 1
        if not ok:
            self.mismatches += 1
            if not self.first_mismatch:
                self.first_mismatch = f"stamp {stamp}: panoptic != semantic*{div}+instance"
        top = int(inst.max()) if inst.size else 0
        self.max_id = max(self.max_id, top)
        self.ids_seen.update(np.unique(inst[inst > 0]).tolist())


def soak(
    minutes: float,
    rate: float,
    height: int,
    width: int,
    model: Optional[Path] = None,
    node_params: Sequence[str] = (),
    seq_frames: int = 300,
    report_every: float = 60.0,
    log_path: Optional[Path] = None,
) -> dict[str, Any]:
    """Run the soak; returns the report dict (see the module docstring)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String

    from vknet_core.synthetic_scene import make_sequence
    from vknet_ros.conversions import array_to_image, image_to_numpy, parse_labels
    from vknet_ros.diagnostics import status_values
    from vknet_ros.run_node import node_command

    ns = f"/soak_{os.getpid()}"
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"soak_ros_{os.getpid()}.log"
    model_param = [] if model is None else [f"model:={model}"]
    cmd = node_command(ns, ["outputs.overlay:=false", *model_param, *node_params])
    log_file = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("soak_camera", namespace=ns, context=ctx)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    pub = node.create_publisher(
        Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    )
    chk = Checker()
    diag: list[dict[str, str]] = []

    def on_out(name: str):
        def cb(msg: Image) -> None:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            chk.add(name, stamp, image_to_numpy(msg))

        return cb

    def on_labels(msg: String) -> None:
        doc = parse_labels(msg)
        with chk.lock:
            chk.divisor, chk.thing_ids = int(doc["label_divisor"]), set(doc["thing_ids"])

    for name in ("panoptic", "semantic", "instance_ids"):
        node.create_subscription(Image, f"vknet_node/{name}", on_out(name), reliable)
    node.create_subscription(String, "vknet_node/labels", on_labels, latched)
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: diag.extend(
            status_values(s) for s in m.status if s.hardware_id.startswith(ns + "/")
        ),
        10,
    )
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
    lines: list[str] = []
    sent = 0
    try:
        end = time.monotonic() + 120.0
        while pub.get_subscription_count() == 0 or chk.divisor is None:
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"vknet_node did not start; its log: {log_path}")
            time.sleep(0.05)
        clips: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:  # the next clips are drawn while this one plays
            seed = 0
            while not stop.is_set():
                c = [
                    rgb
                    for rgb, _ in make_sequence(
                        np.random.default_rng(seed), seq_frames, height, width
                    )
                ]
                seed += 1
                while not stop.is_set():
                    try:
                        clips.put(c, timeout=0.5)
                        break
                    except queue.Full:
                        pass

        threading.Thread(target=produce, daemon=True).start()
        clip: list[np.ndarray] = []
        t0 = time.monotonic()
        next_report = report_every
        last_out, last_t = 0, 0.0
        duration = minutes * 60.0
        while True:
            now = time.monotonic() - t0
            if now >= duration:
                break
            if not clip:
                clip = list(reversed(clips.get()))
            header = Header(frame_id="soak_camera")
            stamp_ns = time.time_ns()
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            pub.publish(array_to_image(clip.pop(), "rgb8", header))
            sent += 1
            if now >= next_report:
                r, _ = _rss_mb(proc.pid)
                rss.append((now, r))
                outs = chk.outputs
                d = diag[-1] if diag else {}
                line = (
                    f"t={now / 60:5.1f} min  sent {sent}  outputs {outs} "
                    f"({(outs - last_out) / (now - last_t):.1f}/s)  node dropped "
                    f"{d.get('frames_dropped', '?')}  RSS {r:.0f} MiB  max id {chk.max_id}"
                    f"  checked {chk.checked}  mismatches {chk.mismatches}"
                )
                print(line, flush=True)
                lines.append(line)
                last_out, last_t = outs, now
                next_report += report_every
            delay = t0 + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t0
        stop.set()
        time.sleep(3.0)  # the last outputs and one more diagnostics message
        rss_end, peak = _rss_mb(proc.pid)
        rss.append((elapsed, rss_end))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        ex.shutdown(timeout_sec=5.0)
        spin.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        log_file.close()
    d = diag[-1] if diag else {}
    steady = [(t, r) for t, r in rss if t >= min(60.0, duration / 2)] or rss
    ts = np.array([t for t, _ in steady]) / 3600.0
    rs = np.array([r for _, r in steady])
    slope = float(np.polyfit(ts, rs, 1)[0]) if len(steady) >= 2 else 0.0
    return {
        "minutes": minutes,
        "rate_hz": rate,
        "size": [height, width],
        "frames_sent": sent,
        "outputs": chk.outputs,
        "output_rate_hz": chk.outputs / elapsed,
        "node_frames_received": int(d.get("frames_received", -1)),
        "node_frames_processed": int(d.get("frames_processed", -1)),
        "node_frames_dropped": int(d.get("frames_dropped", -1)),
        "node_frames_failed": int(d.get("frames_failed", -1)),
        # depth-1 input: replaced in the node's DDS reader before its executor took them
        "replaced_in_dds_queue": sent - int(d.get("frames_received", sent)),
        "rss_start_mib": float(rs[0]),
        "rss_end_mib": float(rss_end),
        "rss_slope_mib_per_h": slope,
        "rss_peak_mib": float(peak),
        "label_divisor": chk.divisor,
        "max_track_id": chk.max_id,
        "distinct_track_ids": len(chk.ids_seen),
        "frames_checked": chk.checked,
        "decode_mismatches": chk.mismatches,
        "first_mismatch": chk.first_mismatch,
        "node_log": str(log_path),
        "minute_lines": lines,
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="soak duration")
    p.add_argument("--rate", type=float, default=30.0, help="camera rate [Hz]")
    p.add_argument("--width", type=int, default=384, help="camera width")
    p.add_argument("--height", type=int, default=192, help="camera height")
    p.add_argument("--model", type=Path, default=None, help="model file (default: shipped tiny)")
    p.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        help="node parameter name:=value (repeatable)",
    )
    p.add_argument("--report-every", type=float, default=60.0, help="seconds between lines")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    a = p.parse_args(argv)
    if a.minutes <= 0 or a.rate <= 0 or a.width < 32 or a.height < 32:
        p.error(
            f"need --minutes > 0, --rate > 0 and a size of at least 32x32, got "
            f"{a.minutes} min, {a.rate} Hz, {a.width}x{a.height}"
        )
    if a.model is not None and not a.model.is_file():
        p.error(f"model file not found: {a.model}")
    return a


def run(a: argparse.Namespace) -> int:
    from vknet_core.atomic import write_text_atomic

    r = soak(a.minutes, a.rate, a.height, a.width, a.model, a.params, report_every=a.report_every)
    print(
        f"soak {r['minutes']:g} min at {r['rate_hz']:g} Hz, {a.width}x{a.height}: "
        f"sent {r['frames_sent']}, outputs {r['outputs']} ({r['output_rate_hz']:.1f}/s)"
    )
    print(
        f"  node: received {r['node_frames_received']}, processed "
        f"{r['node_frames_processed']}, dropped (latest-frame slot) "
        f"{r['node_frames_dropped']}, failed {r['node_frames_failed']}; replaced in the DDS "
        f"queue (depth 1) before the callback {r['replaced_in_dds_queue']}"
    )
    print(
        f"  RSS start {r['rss_start_mib']:.0f} MiB, end {r['rss_end_mib']:.0f} MiB, slope "
        f"{r['rss_slope_mib_per_h']:+.1f} MiB/h, peak {r['rss_peak_mib']:.0f} MiB"
    )
    print(
        f"  label_divisor {r['label_divisor']}, max track id {r['max_track_id']}, distinct ids "
        f"{r['distinct_track_ids']}; frames checked {r['frames_checked']}, decode "
        f"mismatches {r['decode_mismatches']}"
    )
    if a.json:
        write_text_atomic(a.json, json.dumps(r, indent=2))
    print(json.dumps({k: v for k, v in r.items() if k != "minute_lines"}))
    return 0 if r["decode_mismatches"] == 0 else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    from vknet_core.cli import run_cli

    a = parse_args(argv)
    return run_cli("soak_ros.py", lambda: run(a))


if __name__ == "__main__":
    raise SystemExit(main())
