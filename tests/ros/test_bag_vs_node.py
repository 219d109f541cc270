"""The offline bag tool and the live node give identical results for the same recorded frames.

A small bag (synthetic street scene with moving cars, 96x160, 8 frames, a stamp that jumps back
like a looped bag) is processed by ``training/run_video.py --bag-out``; the same serialised
messages are published to ``vknet_node`` over FastDDS loopback (as ``ros2 bag play`` does, one at
a time so none is dropped) and every output message is compared with the bag's: headers,
encodings, sizes and bytes of panoptic, instance_ids, semantic and overlay, and the labels JSON.
Both run the shipped tiny model, so real tracks (instance ids > 0) are compared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.ros.conftest import Probe, params, wait_until
from tests.training.bag_files import LOG0, read_bag, synthetic_frames, write_camera_bag
from vknet_core.image_encodings import image_to_numpy
from vknet_ros.node import VKNetNode
from vknet_ros.params import DEFAULT_MODEL
from vknet_ros.run_node import autostart
from vknet_training.run_video import run_video

NAMES = ("panoptic", "instance_ids", "semantic", "overlay")
S = 10**9
# 6 frames forward, then the recording loops back 1 s (both sides reset their tracks there)
STAMPS = [LOG0 + i * S // 10 for i in range(6)] + [LOG0 - S + i * S // 10 for i in range(2)]


def header_tuple(h):
    return (int(h.stamp.sec), int(h.stamp.nanosec), h.frame_id)


@pytest.mark.parametrize(
    "storage,fmt", [("sqlite3", "raw"), ("mcap-file", "raw"), ("sqlite3", "jpeg")]
)
def test_bag_tool_equals_node(graph, tmp_path, storage, fmt):
    assert DEFAULT_MODEL.is_file(), f"shipped model missing: {DEFAULT_MODEL}"
    rec = write_camera_bag(
        tmp_path / "drive",
        synthetic_frames(len(STAMPS), (96, 160)),
        STAMPS,
        storage=storage,
        fmt=fmt,
    )
    s = run_video(
        DEFAULT_MODEL, rec.path, bag_out=tmp_path / "res", bag_overlay=True, progress=False
    )
    assert s.frames == len(STAMPS) and s.resets == 1
    bag = read_bag(tmp_path / "res")

    ns = f"/cmp_{fmt}_{storage.replace('-', '_')}"
    node = graph.add(
        VKNetNode(
            namespace=ns,
            context=graph.context,
            parameter_overrides=params(
                model=str(DEFAULT_MODEL),
                input__qos="reliable",
                input__depth=len(STAMPS),
                input__compressed=(fmt != "raw"),
            ),
        )
    )
    probe = Probe(graph, ns)
    assert autostart(node)
    pub = probe.pub if fmt == "raw" else probe.pub_compressed
    assert wait_until(lambda: pub.get_subscription_count() > 0)
    assert wait_until(lambda: all(node._pubs[n].get_subscription_count() > 0 for n in NAMES))
    for i, raw in enumerate(rec.raw):
        pub.publish(raw)  # the recorded CDR bytes, as ros2 bag play sends them
        assert wait_until(lambda: all(len(probe.msgs(n)) > i for n in NAMES)), f"frame {i}"
    assert node.stats.resets == 1 and node.stats.dropped == 0

    assert wait_until(lambda: probe.labels)
    assert probe.labels[0].data == bag["/vknet_node/labels"][0][1].data
    div = json.loads(probe.labels[0].data)["label_divisor"]
    tracked = 0
    for name in NAMES:
        live, offline = probe.msgs(name), [m for _, m in bag[f"/vknet_node/{name}"]]
        assert len(live) == len(offline) == len(STAMPS), name
        for i, (a, b) in enumerate(zip(live, offline)):
            where = f"{name} frame {i}"
            assert (
                header_tuple(a.header) == header_tuple(b.header) == header_tuple(rec.headers[i])
            ), where
            assert (a.encoding, a.height, a.width, a.step, a.is_bigendian) == (
                b.encoding,
                b.height,
                b.width,
                b.step,
                b.is_bigendian,
            ), where
            np.testing.assert_array_equal(image_to_numpy(a), image_to_numpy(b), err_msg=where)
            if name == "instance_ids":
                tracked += int(image_to_numpy(b).max() > 0)
    assert tracked >= len(STAMPS) // 2, "the scene should give real tracks to compare"
    for i in range(len(STAMPS)):
        pan, sem, inst = (
            image_to_numpy(probe.msgs(n)[i]) for n in ("panoptic", "semantic", "instance_ids")
        )
        np.testing.assert_array_equal(pan, sem.astype(np.int32) * div + inst)
