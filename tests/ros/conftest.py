"""ROS test fixtures: an isolated DDS domain on loopback, a spinning executor, a tiny checkpoint.

Set before rclpy creates a context: a random ``ROS_DOMAIN_ID`` per test session (parallel CI jobs
and other developers on the machine never see our topics) and localhost-only discovery.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheel) is not installed")

from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

TIMEOUT = 60.0  # generous: a loaded 2-core machine, DDS discovery, a model load


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ``tiny`` model saved as a real vknet checkpoint."""
    import torch

    import vknet_core

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny_random.pt"
    vknet_core.save_checkpoint(vknet_core.build_model("tiny").eval(), path)
    return path


class RosGraph:
    """One rclpy context + a multi-threaded executor spinning in a background thread."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.nodes: list[Any] = []

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def add(self, node: Any) -> Any:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            teardown = getattr(node, "_teardown_active", None)
            if teardown is not None:
                teardown()
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=10.0)


@pytest.fixture
def graph() -> Iterator[RosGraph]:
    g = RosGraph()
    yield g
    g.close()


def wait_until(pred: Callable[[], bool], timeout: float = TIMEOUT, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(period)
    return pred()


def params(**kw: Any) -> list[Parameter]:
    """Parameter overrides from python values.

    params(model='m.pt', **{'outputs.overlay': True})
    """
    return [Parameter(k.replace("__", "."), value=v) for k, v in kw.items()]


RELIABLE = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    history=HistoryPolicy.KEEP_LAST,
    depth=200,
)
LATCHED = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
)


class Probe:
    """Test-side node: publishes camera frames on ``<ns>/image`` and records every output."""

    OUTPUTS = ("panoptic", "instance_ids", "semantic", "overlay")

    def __init__(
        self,
        graph: RosGraph,
        ns: str,
        node_name: str = "vknet_node",
        outputs: tuple[str, ...] = OUTPUTS,
    ) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String

        self.node = graph.add(rclpy.create_node("probe", namespace=ns, context=graph.context))
        self.pub = self.node.create_publisher(Image, "image", RELIABLE)
        self.pub_compressed = self.node.create_publisher(
            CompressedImage, "image/compressed", RELIABLE
        )
        self.received: dict[str, list[Any]] = {n: [] for n in outputs}
        self.labels: list[Any] = []
        self.diagnostics: list[Any] = []
        self._lock = threading.Lock()
        for name in outputs:
            self.node.create_subscription(
                Image, f"{node_name}/{name}", self._recorder(name), RELIABLE
            )
        self.node.create_subscription(String, f"{node_name}/labels", self.labels.append, LATCHED)
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, RELIABLE
        )

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self._lock:
                self.received[name].append((time.monotonic(), msg))

        return cb

    def msgs(self, name: str) -> list[Any]:
        with self._lock:
            return [m for _, m in self.received[name]]

    def wait_subscribed(self, timeout: float = TIMEOUT) -> bool:
        return wait_until(lambda: self.pub.get_subscription_count() > 0, timeout)

    def stamps(self, name: str) -> list[tuple[int, int]]:
        return [(m.header.stamp.sec, m.header.stamp.nanosec) for m in self.msgs(name)]


def image_msg(
    rgb: Any, sec: int, frame_id: str = "camera_optical", encoding: str = "rgb8", nanosec: int = 0
) -> Any:
    from std_msgs.msg import Header

    from vknet_ros.conversions import array_to_image

    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return array_to_image(rgb, encoding, h)
