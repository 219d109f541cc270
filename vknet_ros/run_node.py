"""Entry point of ``ros2 run vknet_ros vknet_node`` and ``python -m vknet_ros``: one
``VKNetNode``, configured and activated at startup unless ``autostart`` is false, spun until
Ctrl-C or shutdown."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn

from vknet_ros.node import VKNetNode
from vknet_ros.params import AUTOSTART


def autostart(node: VKNetNode) -> bool:
    """configure + activate, as launch_ros' LifecycleNode(autostart=True); True if active."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: configure failed; node stays unconfigured")
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: activate failed; node stays inactive")
        return False
    return True


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of ``ros2 run vknet_ros vknet_node`` and ``python -m vknet_ros``."""
    rclpy.init(args=args)
    node = VKNetNode()
    try:
        if node.get_parameter(AUTOSTART).value:
            autostart(node)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._teardown_active()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def node_command(
    namespace: str, params: Sequence[str] = (), ros_args: Sequence[str] = ()
) -> list[str]:
    """argv that starts the node in its own process (what a deployment runs):
    ``python -m vknet_ros --ros-args -r __ns:=<namespace> -p <name:=value> ... <ros_args>``."""
    cmd = [sys.executable, "-m", "vknet_ros", "--ros-args", "-r", f"__ns:={namespace}"]
    for p in params:
        cmd += ["-p", p]
    return cmd + list(ros_args)
