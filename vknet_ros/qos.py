"""The node's QoS profiles (rclpy QoS objects only; see README "HD cameras and QoS").

Input ``auto`` (default): reliable, and best effort as soon as a best-effort camera (one on the
sensor-data profile, which a reliable subscription cannot match) shows up. Reliable is what
delivers HD frames on loopback with these FastDDS wheels (scripts/qos_ros.py): best effort loses
most 1280x720 and nearly all 1920x1080 rgb8 frames, since one lost UDP fragment loses the frame.
``sensor_data``: best effort, volatile (the REP-2003 consumer side; connects to any camera).
``reliable``: reliable only. All keep-last ``input.depth``. Outputs: reliable, volatile,
keep-last ``output.depth`` (any subscriber QoS can connect). ``~/labels``: reliable + transient
local, depth 1 (latched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from vknet_ros.params import NodeParams


def input_qos(params: NodeParams, best_effort: bool = False) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) or reliable, keep-last ``input.depth``."""
    if params.input_qos == "sensor_data" or best_effort:
        return QoSProfile(
            **{
                k: getattr(qos_profile_sensor_data, k)
                for k in ("reliability", "durability", "history")
            },
            depth=params.input_depth,
        )
    return QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
        history=HistoryPolicy.KEEP_LAST,
        depth=params.input_depth,
    )


def output_qos(params: NodeParams) -> QoSProfile:
    """Reliable, volatile, keep-last ``output.depth`` (any subscriber QoS can connect)."""
    return QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
        history=HistoryPolicy.KEEP_LAST,
        depth=params.output_depth,
    )


LABELS_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
)


class InputSubscriptions:
    """The node's input subscriptions (``image``, optional ``image/compressed`` and
    ``camera_info``) under ``input.qos``; with ``auto``, re-created best effort (one log line)
    when a publisher's QoS is incompatible with reliable. ``poll()`` applies that switch outside
    the event callback (the node calls it from its timer)."""

    def __init__(
        self, node: Any, params: NodeParams, wanted: list[tuple[Any, str, Callable[[Any], None]]]
    ) -> None:
        self.node, self.params, self.wanted = node, params, wanted
        self.best_effort = params.input_qos == "sensor_data"
        self._switch = False
        self.subs: list[Any] = []
        self._create()

    def _create(self) -> None:
        # no qos_overriding_options here: the qos_overrides parameters they declare would pin
        # the first reliability for good; input.qos and input.depth are the input's settings
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible)
        qos = input_qos(self.params, self.best_effort)
        self.subs = [
            self.node.create_subscription(t, topic, cb, qos, event_callbacks=events)
            for t, topic, cb in self.wanted
        ]

    def _on_incompatible(self, info: Any) -> None:
        if self.params.input_qos == "auto" and not self.best_effort:
            self._switch = True
        elif not self._switch:
            self.node.get_logger().warning(
                f"a publisher's QoS is incompatible with input.qos={self.params.input_qos} "
                f"(policy id {info.last_policy_kind}); no frames from it"
            )

    def poll(self) -> None:
        if self._switch:
            self._switch = False
            self.destroy()
            self.best_effort = True
            self._create()
            self.node.get_logger().warning(
                "input.qos=auto: a best-effort camera publishes on "
                f"{self.node.resolve_topic_name('image')}; subscribed best effort now (HD "
                "frames may be lost on loopback: publish reliable, see README)"
            )

    def topics(self) -> list[str]:
        return [self.node.resolve_topic_name(t) for _, t, _ in self.wanted]

    def destroy(self) -> None:
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.subs = []
