"""The node's QoS profiles (rclpy QoS objects only; see README "HD cameras and QoS").

Input ``sensor_data``: best effort, volatile, keep-last ``input.depth`` (REP-2003 consumer side:
connects to reliable and best-effort cameras). ``reliable``: connects to reliable cameras only,
and retransmits lost fragments of large frames. Outputs: reliable, volatile, keep-last
``output.depth`` (any subscriber QoS can connect). ``~/labels``: reliable + transient local,
depth 1 (latched).
"""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from vknet_ros.params import NodeParams


def input_qos(params: NodeParams) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) or reliable, keep-last ``input.depth``."""
    if params.input_qos == "sensor_data":
        return QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in
                             ("reliability", "durability", "history")}, depth=params.input_depth)
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=params.input_depth)


def output_qos(params: NodeParams) -> QoSProfile:
    """Reliable, volatile, keep-last ``output.depth`` (any subscriber QoS can connect)."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=params.output_depth)


LABELS_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        history=HistoryPolicy.KEEP_LAST, depth=1)
