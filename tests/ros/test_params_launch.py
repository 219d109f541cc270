"""Parameters (config/vknet.yaml -> NodeParams), the `python -m vknet_ros` entry point and the
launch file."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.ros.conftest import TIMEOUT, Probe, image_msg, rclpy, wait_until
from vknet_ros.node import VKNetNode
from vknet_ros.params import DEFAULT_MODEL, NodeParams, core_defaults, read_all
from vknet_ros.run_node import node_command

REPO = Path(__file__).resolve().parents[2]
YAML = REPO / "config" / "vknet.yaml"


def node_with_args(args: list[str]):
    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", *args], context=ctx)
    return ctx, VKNetNode(context=ctx)


def close(ctx, node) -> None:
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def test_yaml_lists_every_parameter_with_the_defaults():
    import yaml

    ctx, node = node_with_args(["--params-file", str(YAML)])
    try:
        p = read_all(node)
        declared = {n for n in node._parameters if not n.startswith("qos_overrides")}
    finally:
        close(ctx, node)
    assert p == NodeParams(merge=p.merge, tracker=p.tracker)  # scalars: YAML == dataclass defaults
    core = core_defaults()
    assert dict(p.merge) == core["merge"] and dict(p.tracker) == core["tracker"]
    doc = yaml.safe_load(YAML.read_text())["/**"]["ros__parameters"]

    def flat(d, prefix=""):
        for k, v in d.items():
            yield from (flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"])

    assert set(flat(doc)) == declared - {"use_sim_time", "start_type_description_service"}
    assert p.model_path == DEFAULT_MODEL and p.outputs == ("panoptic", "instance_ids", "semantic")


def test_overrides_are_typed_and_validated():
    ctx, node = node_with_args(
        [
            "--params-file",
            str(YAML),
            "-p",
            "network.height:=384",
            "-p",
            "network.width:=1248",
            "-p",
            "merge.overlap_thr:=1",
            "-p",
            "outputs.semantic:=false",
            "-p",
            "model:=~/m.onnx",
        ]
    )
    try:
        p = read_all(node)
    finally:
        close(ctx, node)
    assert p.network_hw == (384, 1248) and dict(p.merge)["overlap_thr"] == 1.0
    assert p.outputs == ("panoptic", "instance_ids")
    assert p.model_path == Path("~/m.onnx").expanduser()
    for bad, msg in (
        (["-p", "backend:=caffe"], "backend='caffe'"),
        (["-p", "network.height:=100", "-p", "network.width:=64"], "network.height=100"),
        (["-p", "tracker.memo_momentum:=high"], "tracker.memo_momentum='high'"),
        (["-p", "input.qos:=fast"], "input.qos='fast'"),
    ):
        ctx, node = node_with_args(bad)
        try:
            with pytest.raises(ValueError, match=msg):
                read_all(node)
        finally:
            close(ctx, node)


def test_python_m_vknet_ros_serves_frames(graph, tiny_checkpoint):
    """The user path: a separate process started with --ros-args, talking over DDS."""
    ns = "/cam_proc"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        node_command(  # the params file first, then the overrides, as a user writes them
            ns,
            ros_args=["--params-file", str(YAML), "-p", f"model:={tiny_checkpoint}"]
            + ["-p", "outputs.overlay:=false", "-r", "image:=camera/image_raw"],
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        probe = Probe(graph, ns, outputs=("panoptic",))
        pub = probe.node.create_publisher(
            type(image_msg(np.zeros((2, 2, 3), np.uint8), 0)), "camera/image_raw", 10
        )
        assert wait_until(
            lambda: pub.get_subscription_count() > 0 or proc.poll() is not None, TIMEOUT * 2
        ), "node process never subscribed"
        assert proc.poll() is None, proc.stdout.read()
        rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
        # discovery is asymmetric for a moment after matching: resend until served
        for _ in range(10):
            pub.publish(image_msg(rgb, sec=5))
            if wait_until(lambda: len(probe.msgs("panoptic")) >= 1, timeout=TIMEOUT / 10):
                break
        assert probe.msgs("panoptic") and probe.msgs("panoptic")[0].header.stamp.sec == 5
        assert wait_until(lambda: bool(probe.labels))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert f"waiting for images on {ns}/camera/image_raw" in out


def test_launch_file_compiles():
    """The launch file is valid Python for any distro (the launch API is exercised below)."""
    src = (REPO / "launch" / "camera.launch.py").read_text()
    compile(src, "camera.launch.py", "exec")


@pytest.mark.skipif(
    importlib.util.find_spec("launch_ros") is None,
    reason="launch_ros is not importable (not a pip wheel; needs a full ROS 2 "
    "install: Humble or Jazzy)",
)
def test_launch_description_builds_the_node():  # pragma: no cover - needs a ROS install
    from launch import LaunchContext, LaunchDescription
    from launch.actions import OpaqueFunction

    spec = importlib.util.spec_from_file_location(
        "camera_launch", REPO / "launch" / "camera.launch.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    names = {a.name for a in ld.entities if hasattr(a, "name") and hasattr(a, "default_value")}
    assert {"namespace", "image_topic", "backend", "model", "params_file"} <= names
    ctx = LaunchContext()
    for a in ld.entities:
        if not isinstance(a, OpaqueFunction):
            a.visit(ctx)
    ctx.launch_configurations.update(
        {
            "params_file": str(YAML),
            "namespace": "cam_front",
            "image_topic": "/cam/image_raw",
            "backend": "onnxruntime",
        }
    )
    (opaque,) = [a for a in ld.entities if isinstance(a, OpaqueFunction)]
    (node,) = opaque.execute(ctx)
    assert node.node_package == "vknet_ros" and node.node_executable == "vknet_node"
