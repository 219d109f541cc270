"""vknet_node's /diagnostics in the diagnostic_updater sense and its parameter lifecycle, over
FastDDS on loopback: time-window rate, expected rate, stale timeout, a status in every lifecycle
state, namespaced status names; parameter changes applied on activate or refused with a reason."""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from tests.ros.conftest import Probe, image_msg, params, wait_until
from vknet_ros.diagnostics import DiagnosticsConfig, NodeStats, status_values
from vknet_ros.node import VKNetNode
from vknet_ros.run_node import autostart

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)


def start(graph, ns, **kw):
    return graph.add(
        VKNetNode(namespace=ns, context=graph.context, parameter_overrides=params(**kw))
    )


def frame(sec: int) -> object:
    rng = np.random.default_rng(sec)
    return image_msg(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), sec=sec)


def statuses(probe: Probe, fqn: str) -> list[DiagnosticStatus]:
    return [s for d in list(probe.diagnostics) for s in d.status if s.hardware_id == fqn]


def last_level(probe: Probe, fqn: str) -> object:
    """The level of the newest status of ``fqn``; None before the first one arrived."""
    got = statuses(probe, fqn)
    return got[-1].level if got else None


def test_status_goes_warn_then_stale_after_the_stream_stops(graph, tiny_checkpoint):
    ns = "/cam_stale"
    node = start(
        graph,
        ns,
        model=str(tiny_checkpoint),
        diagnostics__period=0.2,
        diagnostics__window=1.5,
        diagnostics__stale_timeout=4.0,
    )
    probe = Probe(graph, ns, outputs=("panoptic",))
    fqn = f"{ns}/vknet_node"
    assert autostart(node) and probe.wait_subscribed()
    for sec in range(1, 4):
        probe.pub.publish(frame(sec))
        assert wait_until(lambda: len(probe.msgs("panoptic")) == sec)
    assert wait_until(lambda: last_level(probe, fqn) == OK)  # frames flowing
    n = len(statuses(probe, fqn))
    assert wait_until(lambda: last_level(probe, fqn) == STALE)  # the stream stopped
    after = [s.level for s in statuses(probe, fqn)[n:]]
    assert WARN in after and after.index(WARN) < after.index(STALE), after
    stale = statuses(probe, fqn)[-1]
    assert "no frame processed for" in stale.message
    assert status_values(stale)["rate_hz"] == "0.00"  # the rate covers the window only
    probe.pub.publish(frame(10))  # frames again: back to OK
    assert wait_until(lambda: last_level(probe, fqn) == OK)


def test_expected_rate_and_window_rules():
    stats = NodeStats()
    stats.activated()
    t0 = stats.active_since
    cfg = DiagnosticsConfig(window_s=2.0, expected_rate_hz=10.0, stale_timeout_s=5.0)
    assert stats.to_status("n", "h", {}, cfg, now=t0 + 1).message == "waiting for images"
    stats.active_since = t0 - 60  # active for a minute: the rate covers the whole window
    for _ in range(5):
        stats.record({"total": 1.0})
    t = stats.last_done
    s = stats.to_status("n", "h", {}, cfg, now=t + 0.5)  # 5 frames in 2 s: 2.5 Hz < 9 Hz
    assert s.level == WARN and "below the expected 10 Hz" in s.message, s.message
    ok = stats.to_status("n", "h", {}, DiagnosticsConfig(2.0, 2.0, 0.1, 5.0), now=t + 0.5)
    assert ok.level == OK and status_values(ok)["rate_hz"] == "2.50"
    assert stats.to_status("n", "h", {}, cfg, now=t + 6).level == STALE
    stats.error("bad_input", "unsupported image encoding '64FC1'")
    bad = stats.to_status("n", "h", {}, DiagnosticsConfig(2.0, 0.0, 0.1, 5.0), now=t + 0.5)
    assert bad.level == WARN and "64FC1" in bad.message


def test_error_while_the_model_fails_to_load_then_fixed_by_a_parameter(
    graph, tiny_checkpoint, tmp_path, capfd
):
    ns = "/cam_fail"
    node = start(graph, ns, model=str(tmp_path / "missing.pt"), diagnostics__period=0.2)
    probe = Probe(graph, ns, outputs=("panoptic",))
    fqn = f"{ns}/vknet_node"
    assert wait_until(lambda: statuses(probe, fqn))  # a status while unconfigured
    assert statuses(probe, fqn)[-1].level == WARN
    assert "unconfigured" in statuses(probe, fqn)[-1].message
    assert not autostart(node)
    assert wait_until(lambda: statuses(probe, fqn)[-1].level == ERROR)
    s = statuses(probe, fqn)[-1]
    assert s.name == f"{fqn}: video panoptic segmentation" and s.hardware_id == fqn
    assert "model file not found" in s.message and "missing.pt" in s.message
    assert status_values(s)["lifecycle_state"] == "inactive"
    err = capfd.readouterr().err
    hint = [ln for ln in err.splitlines() if "activate failed" in ln and "ros2 param set" in ln]
    assert hint and f"ros2 lifecycle set {fqn} activate" in hint[0], err
    # the hint is true: set the parameter, activate again, and it applies
    assert node.set_parameters([Parameter("model", value=str(tiny_checkpoint))])[0].successful
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert probe.wait_subscribed()
    probe.pub.publish(frame(1))
    assert wait_until(lambda: len(probe.msgs("panoptic")) == 1)
    assert wait_until(lambda: last_level(probe, fqn) == OK)
    # publisher parameters are refused while configured, with the reason
    res = node.set_parameters([Parameter("outputs.semantic", value=False)])[0]
    assert not res.successful and "read on configure" in res.reason and "cleanup" in res.reason
    assert node.get_parameter("outputs.semantic").value is True
    # a change made while active applies on the next activate
    assert node.set_parameters([Parameter("diagnostics.expected_rate", value=100.0)])[0].successful
    assert node.params.expected_rate == 0.0
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert wait_until(lambda: "inactive" in statuses(probe, fqn)[-1].message)
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node.params.expected_rate == 100.0


def test_two_namespaced_nodes_have_distinct_status_names(graph, tiny_checkpoint):
    nodes = {
        ns: start(graph, ns, model=str(tiny_checkpoint), diagnostics__period=0.2)
        for ns in ("/front", "/rear")
    }
    probe = Probe(graph, "/front", outputs=("panoptic",))
    for node in nodes.values():
        assert autostart(node)
    assert wait_until(lambda: all(statuses(probe, f"{ns}/vknet_node") for ns in nodes))
    names = {ns: statuses(probe, f"{ns}/vknet_node")[-1].name for ns in nodes}
    assert names == {
        "/front": "/front/vknet_node: video panoptic segmentation",
        "/rear": "/rear/vknet_node: video panoptic segmentation",
    }
