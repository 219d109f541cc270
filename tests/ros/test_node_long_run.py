"""vknet_node on real cameras for hours (issue 9), over FastDDS on loopback with a real tiny model:
HD streams, bounded network size, oversized headers, camera encodings, camera_info, input QoS."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from tests.ros.conftest import RELIABLE, Probe, image_msg, params, wait_until
from tests.ros.test_camera_encodings import (
    blocks,
    nv21,
    packed_422,
    ramps,
)
from tests.ros.test_camera_encodings import (
    msg as raw_msg,
)
from vknet_ros.conversions import image_to_numpy
from vknet_ros.node import VKNetNode
from vknet_ros.run_node import autostart


def start(graph, ns, **kw):
    return graph.add(
        VKNetNode(namespace=ns, context=graph.context, parameter_overrides=params(**kw))
    )


def street(h: int, w: int, t: int = 0) -> np.ndarray:
    img = np.full((h, w, 3), 90, np.uint8)
    img[h // 2 :, :] = (70, 70, 70)  # road
    x = (40 + 30 * t) % max(1, w - w // 5)
    img[h // 2 - h // 8 : h // 2 + h // 8, x : x + w // 5] = (200, 30, 30)
    return img


def record_network_inputs(node) -> list:
    """Wrap the loaded backend's step: the shapes of the images the network really gets."""
    backend = node._loaded.pipeline.backend
    shapes, step = [], backend.step

    def spy(feeds):
        shapes.append(tuple(feeds["image"].shape))
        return step(feeds)

    backend.step = spy
    return shapes


def test_1280x720_stream_with_the_default_qos_gets_every_output(graph, tiny_checkpoint):
    ns = "/cam_hd"  # the probe's camera publishes reliable (REP-2003); input.qos is left at auto
    node = start(graph, ns, model=str(tiny_checkpoint))
    probe = Probe(graph, ns, outputs=("panoptic", "semantic"))
    assert node.get_parameter("input.qos").value == "auto"
    assert autostart(node) and probe.wait_subscribed()
    shapes = record_network_inputs(node)
    for t in range(4):  # one at a time: each frame must come back (nothing lost in transport)
        probe.pub.publish(image_msg(street(720, 1280, t), sec=50 + t))
        assert wait_until(lambda: len(probe.msgs("semantic")) > t), f"frame {t} lost"
    assert probe.stamps("panoptic") == [(50 + t, 0) for t in range(4)]
    m = probe.msgs("panoptic")[-1]
    assert (m.height, m.width) == (720, 1280)  # outputs at camera resolution
    assert set(shapes) == {(1, 384, 704, 3)}  # 1280x720 -> 683x384 (aspect kept), padded to 32
    assert node.stats.dropped == 0 and node.stats.bad_input == 0


def test_4000x3000_frame_served_at_the_bounded_network_size(graph, tiny_checkpoint):
    ns = "/cam_12mp"
    node = start(
        graph, ns, model=str(tiny_checkpoint), outputs__instance_ids=False, outputs__semantic=False
    )
    probe = Probe(graph, ns, outputs=("panoptic",))
    assert autostart(node) and probe.wait_subscribed()
    shapes = record_network_inputs(node)
    probe.pub.publish(image_msg(street(3000, 4000), sec=7))
    assert wait_until(lambda: len(probe.msgs("panoptic")) == 1)
    m = probe.msgs("panoptic")[0]
    assert (m.height, m.width) == (3000, 4000)
    assert shapes == [(1, 384, 512, 3)]  # long side <= 1248, short side <= 384


def test_20000x20000_header_rejected_from_the_header_alone(graph, tiny_checkpoint, capfd):
    ns = "/cam_huge"
    node = start(graph, ns, model=str(tiny_checkpoint))
    probe = Probe(graph, ns, outputs=("panoptic",))
    assert autostart(node) and probe.wait_subscribed()
    huge = Image(height=20000, width=20000, encoding="rgb8", step=60000)
    huge.data = bytes(48)  # the header lies: nothing of 1.2 GB is sent, nor may be allocated
    huge.header.stamp.sec = 1
    for i in range(2):
        probe.pub.publish(huge)
        assert wait_until(lambda: node.stats.bad_input == i + 1)
    probe.pub.publish(image_msg(street(64, 96), sec=2))  # and the node keeps serving
    assert wait_until(lambda: probe.stamps("panoptic") == [(2, 0)])
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if "20000x20000" in ln]
    assert len(lines) == 1, err  # one log line, from the header check (not from decoding)
    assert "400000000 pixels, over input.max_pixels = 16777216" in lines[0]
    assert node.stats.errors == 0 and node.stats.processed == 1


ENCODED = {
    "yuv422": lambda: raw_msg(packed_422(blocks(1, 2), "UYVY"), "yuv422"),
    "yuv422_yuy2": lambda: raw_msg(packed_422(blocks(1, 2), "YUYV"), "yuv422_yuy2"),
    "nv21": lambda: raw_msg(nv21(blocks(2, 2)), "nv21"),
    **{
        f"bayer_{p.lower()}8": (lambda p=p: raw_msg(ramps()[:, :, 1], f"bayer_{p.lower()}8"))
        for p in ("RGGB", "BGGR", "GBRG", "GRBG")
    },
    "rgb16": lambda: raw_msg(blocks(1, 1).astype(np.uint16) * 257, "rgb16"),
    "bgr16": lambda: raw_msg(blocks(1, 1).astype(np.uint16) * 257, "bgr16"),
}


def test_each_new_camera_encoding_through_the_node(graph, tiny_checkpoint):
    ns = "/cam_enc"
    node = start(graph, ns, model=str(tiny_checkpoint))
    probe = Probe(graph, ns, outputs=("panoptic",))
    assert autostart(node) and probe.wait_subscribed()
    for i, (enc, make) in enumerate(ENCODED.items()):
        m = make()
        m.header.stamp.sec = 100 + i
        probe.pub.publish(m)
        assert wait_until(lambda: len(probe.msgs("panoptic")) > i), f"{enc}: no output"
        out = probe.msgs("panoptic")[i]
        assert out.header.stamp.sec == 100 + i and (out.height, out.width) == (
            m.height,
            m.width,
        ), enc
    assert node.stats.bad_input == 0 and node.stats.errors == 0


def test_camera_info_is_republished_with_each_outputs_header(graph, tiny_checkpoint):
    ns = "/cam_info"
    node = start(graph, ns, model=str(tiny_checkpoint))
    probe = Probe(graph, ns, outputs=("panoptic",))
    info_pub = probe.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    got: list = []
    probe.node.create_subscription(CameraInfo, "vknet_node/camera_info", got.append, RELIABLE)
    assert autostart(node) and probe.wait_subscribed()
    assert wait_until(lambda: info_pub.get_subscription_count() > 0)
    for sec in (3, 4):
        frame = image_msg(street(64, 96), sec=sec, frame_id="cam_optical")
        info = CameraInfo(height=64, width=96, distortion_model="plumb_bob")
        info.header = frame.header
        info.k = [80.0, 0.0, 48.0, 0.0, 80.0, 32.0, 0.0, 0.0, 1.0]
        info_pub.publish(info)
        assert wait_until(lambda: len(node._infos) >= sec - 2)  # the pair arrives in any order
        probe.pub.publish(frame)
        assert wait_until(lambda: len(got) == sec - 2), f"no camera_info for frame {sec}"
    pan = probe.msgs("panoptic")
    assert [m.header for m in got] == [m.header for m in pan]
    assert list(got[-1].k) == [80.0, 0.0, 48.0, 0.0, 80.0, 32.0, 0.0, 0.0, 1.0]
    # a frame without a camera_info of its stamp: outputs, but no camera_info
    probe.pub.publish(image_msg(street(64, 96), sec=9))
    assert wait_until(lambda: len(probe.msgs("panoptic")) == 3)
    assert not wait_until(lambda: len(got) > 2, timeout=1.0)


def test_best_effort_camera_is_followed_by_input_qos_auto(graph, tiny_checkpoint, capfd):
    ns = "/cam_be"
    node = start(graph, ns, model=str(tiny_checkpoint), diagnostics__period=0.2)
    probe = Probe(graph, ns, outputs=("panoptic",))
    be_pub = probe.node.create_publisher(
        Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    )
    assert autostart(node)
    assert wait_until(lambda: node._inputs is not None and node._inputs.best_effort)
    assert wait_until(lambda: be_pub.get_subscription_count() > 0)
    for sec in (1, 2):
        be_pub.publish(image_msg(street(64, 96), sec=sec))  # small frames: best effort is fine
        if not wait_until(lambda: len(probe.msgs("panoptic")) >= sec - 1 + 1, timeout=10):
            be_pub.publish(image_msg(street(64, 96), sec=sec))  # a lost datagram, once
        assert wait_until(lambda: (sec, 0) in probe.stamps("panoptic"))
    assert "subscribed best effort now" in capfd.readouterr().err


@pytest.mark.parametrize("max_pixels", [6144])
def test_max_pixels_parameter_applies(graph, tiny_checkpoint, max_pixels):
    ns = "/cam_small_cap"
    node = start(graph, ns, model=str(tiny_checkpoint), input__max_pixels=max_pixels)
    probe = Probe(graph, ns, outputs=("panoptic",))
    assert autostart(node) and probe.wait_subscribed()
    probe.pub.publish(image_msg(street(64, 97), sec=1))  # 6208 pixels > 6144
    assert wait_until(lambda: node.stats.bad_input == 1)
    probe.pub.publish(image_msg(street(64, 96), sec=2))  # 6144: served
    assert wait_until(lambda: probe.stamps("panoptic") == [(2, 0)])
    assert image_to_numpy(probe.msgs("panoptic")[0]).shape == (64, 96)
