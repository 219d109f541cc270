"""vknet_node over real ROS 2 topics (FastDDS on loopback) with a real tiny model.

Each test starts the node in-process (its own rclpy context and executor thread), publishes
camera frames from a probe node and checks what comes back on every output.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.ros.conftest import Probe, TIMEOUT, image_msg, params, wait_until

from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from vknet_ros.conversions import image_to_numpy, parse_labels  # noqa: E402
from vknet_ros.diagnostics import status_values  # noqa: E402
from vknet_ros.node import VKNetNode, autostart  # noqa: E402

H, W = 64, 96


def start_node(graph, ns, **kw):
    node = graph.add(VKNetNode(namespace=ns, context=graph.context,
                               parameter_overrides=params(**kw)))
    return node


def rgb_frame(t: int, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(t)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[10:30, 5 + t:25 + t] = (200, 30, 30)
    return img


def test_outputs_headers_encodings_sizes(graph, tiny_checkpoint):
    ns = "/cam_a"
    node = start_node(graph, ns, model=str(tiny_checkpoint), diagnostics__period=0.2)
    probe = Probe(graph, ns)
    assert autostart(node)
    assert probe.wait_subscribed()
    assert wait_until(lambda: probe.node.count_publishers(f"{ns}/vknet_node/overlay") > 0)
    # wait for our output subscriptions to be matched (the overlay is lazy)
    assert wait_until(lambda: node._pubs["overlay"].get_subscription_count() > 0)
    sent = []
    for t in range(3):
        msg = image_msg(rgb_frame(t), sec=100 + t, nanosec=7)
        sent.append(msg)
        probe.pub.publish(msg)
        assert wait_until(lambda: len(probe.msgs("panoptic")) > t and
                          len(probe.msgs("overlay")) > t), f"no outputs for frame {t}"
    expect = {"panoptic": ("32SC1", np.int32), "instance_ids": ("16UC1", np.uint16),
              "semantic": ("mono8", np.uint8), "overlay": ("rgb8", np.uint8)}
    assert wait_until(lambda: all(len(probe.msgs(n)) >= 3 for n in expect))
    for name, (enc, dtype) in expect.items():
        got = probe.msgs(name)
        assert [m.header for m in got] == [m.header for m in sent], name
        for m in got:
            assert m.encoding == enc and (m.height, m.width) == (H, W), (name, m.encoding)
            assert image_to_numpy(m).dtype == dtype
    # panoptic = semantic * divisor + instance id, per pixel
    labels = parse_labels(probe.labels[0]) if wait_until(lambda: probe.labels) else None
    assert labels is not None and labels["label_divisor"] == 1000
    assert labels["classes"][13] == "car" and labels["thing_ids"] == [11, 13]
    pan = image_to_numpy(probe.msgs("panoptic")[-1])
    sem = image_to_numpy(probe.msgs("semantic")[-1])
    inst = image_to_numpy(probe.msgs("instance_ids")[-1])
    np.testing.assert_array_equal(pan, sem.astype(np.int32) * 1000 + inst)
    # diagnostics: rate, per-stage latency, dropped frames, backend
    assert wait_until(lambda: any(
        status_values(d.status[0]).get("frames_processed") == "3" for d in probe.diagnostics))
    vals = status_values(probe.diagnostics[-1].status[0])
    for key in ("rate_hz", "pipeline_mean_ms", "decode_mean_ms", "publish_mean_ms",
                "latency_mean_ms", "frames_dropped", "backend"):
        assert key in vals, key
    assert vals["backend"] == "torch"
