"""Which QoS / FastDDS transport settings deliver HD camera frames on loopback (README "HD").

    python scripts/qos_ros.py                         # 1280x720 and 1920x1080, 30 Hz, 3 s each
    python scripts/qos_ros.py --sizes 1280x720 --seconds 5

For each frame size, transport (``FASTDDS_BUILTIN_TRANSPORTS`` unset = FastDDS' default, or
``LARGE_DATA``) and (publisher, subscriber) reliability pair, a camera process publishes rgb8
``sensor_msgs/Image`` at ``--rate`` Hz and this process subscribes with depth 1 (like
vknet_node) and counts the frames that arrive: delivered / sent. Both processes are separate
(as a camera driver and the node are), on an isolated domain with localhost discovery.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

PAIRS: tuple[tuple[str, str], ...] = (
    ("reliable", "best_effort"),  # REP-2003 camera, sensor-data subscriber (vknet default)
    ("best_effort", "best_effort"),  # camera on the sensor-data profile
    ("reliable", "reliable"),
)


def _qos(reliability: str, depth: int) -> Any:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    rel = (
        ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    )
    return QoSProfile(depth=depth, reliability=rel)


def publish(h: int, w: int, rate: float, seconds: float, reliability: str) -> None:
    """Camera role: wait for one subscriber, publish for ``seconds``, then print the count."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("qos_camera")
    pub = node.create_publisher(Image, "qos_image", _qos(reliability, 1))
    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(1.0)  # let discovery settle on both sides
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
    msg.data = np.random.default_rng(0).integers(0, 255, h * w * 3, dtype=np.uint8).tobytes()
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        msg.header.stamp.sec = n
        pub.publish(msg)
        n += 1
        delay = t0 + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(2.0)  # reliable retransmissions
    print(f"SENT {n}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def measure(
    h: int,
    w: int,
    rate: float,
    seconds: float,
    pub_rel: str,
    sub_rel: str,
    transport: Optional[str],
) -> dict[str, Any]:
    """One configuration: {"sent", "delivered", "fraction"} (own domain id per run)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(random.randint(102, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
    )
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    if transport:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = transport
    saved = {
        k: os.environ.get(k)
        for k in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE")
    }
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    if transport:
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = transport
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "publisher",
            "--sizes",
            f"{w}x{h}",
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--pub",
            pub_rel,
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("qos_node", context=ctx)
    got: set[int] = set()
    lock = threading.Lock()

    def cb(msg: Image) -> None:
        with lock:
            got.add(msg.header.stamp.sec)

    node.create_subscription(Image, "qos_image", cb, _qos(sub_rel, 1))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    try:
        out, _ = proc.communicate(timeout=seconds + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
        ex.shutdown(timeout_sec=5.0)
        spin.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    sent = int(out.split("SENT")[-1]) if "SENT" in out else 0
    return {
        "size": f"{w}x{h}",
        "transport": transport or "default",
        "publisher": pub_rel,
        "subscriber": sub_rel,
        "sent": sent,
        "delivered": len(got),
        "fraction": len(got) / sent if sent else 0.0,
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1280x720,1920x1080", help="WxH list")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument(
        "--transports",
        default=",LARGE_DATA",
        help="FASTDDS_BUILTIN_TRANSPORTS values ('' = FastDDS default)",
    )
    p.add_argument("--role", default="measure", choices=("measure", "publisher"))
    p.add_argument("--pub", default="reliable", choices=("reliable", "best_effort"))
    a = p.parse_args(argv)
    try:
        a.sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes must be WxH[,WxH...], got {a.sizes!r}")
    return a


def main(argv: Optional[Sequence[str]] = None) -> int:
    from vknet_core.cli import run_cli

    a = parse_args(argv)
    return run_cli("qos_ros.py", lambda: run(a))


def run(a: argparse.Namespace) -> int:
    if a.role == "publisher":
        ((w, h),) = a.sizes
        publish(h, w, a.rate, a.seconds, a.pub)
        return 0
    rows = []
    for w, h in a.sizes:
        for transport in a.transports.split(","):
            for pub_rel, sub_rel in PAIRS:
                r = measure(h, w, a.rate, a.seconds, pub_rel, sub_rel, transport or None)
                rows.append(r)
                print(
                    f"{r['size']:>9} {r['transport']:>10}  pub {pub_rel:<11} sub "
                    f"{sub_rel:<11} delivered {r['delivered']:4d} / {r['sent']:4d}",
                    flush=True,
                )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
