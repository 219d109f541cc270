"""``vknet_node``: online video panoptic segmentation of camera images (DESIGN §3.4).

A thin rclpy lifecycle node over the framework-free ``VideoPanopticPipeline``:

  image (sensor_msgs/Image, sensor-data QoS, depth 1)  ─┐ callback stores only the latest frame
  image/compressed (optional)                          ─┘ (a replaced frame counts as dropped)
  worker thread: decode ─ pipeline.step ─ encode ─ publish, every output with the input header
    ~/panoptic 32SC1 · ~/instance_ids 16UC1 · ~/semantic mono8 · ~/overlay rgb8 (while subscribed)
  ~/labels (std_msgs/String JSON, reliable + transient local) · /diagnostics (1 Hz)
  ~/reset_tracks (std_srvs/Trigger); tracks also reset on a time jump back or a resolution change

Lifecycle: configure reads parameters and creates publishers; activate loads the model and
subscribes; deactivate unsubscribes and frees the model. ``autostart`` (default true) runs
configure + activate at startup. A failure logs one line and leaves the node up and serving.
"""
from __future__ import annotations

import gc
import threading
import time
from typing import Any, Callable, Optional, Union

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from vknet_ros.conversions import (ConversionError, array_to_image, compressed_to_rgb,
                                   frame_to_images, image_to_rgb, labels_to_msg)
from vknet_ros.diagnostics import NodeStats, diagnostic_array
from vknet_ros.loader import LoadedPipeline, load_pipeline, warmup_image
from vknet_ros.params import AUTOSTART, NodeParams, declare_all, read_all

NODE_NAME = "vknet_node"
PipelineFactory = Callable[[NodeParams], LoadedPipeline]
_THROTTLE_S = 5.0


def input_qos(params: NodeParams) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) or reliable, keep-last ``input.depth``."""
    if params.input_qos == "sensor_data":
        qos = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in
                            ("reliability", "durability", "history")}, depth=params.input_depth)
    else:
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE,
                         history=HistoryPolicy.KEEP_LAST, depth=params.input_depth)
    return qos


def output_qos(params: NodeParams) -> QoSProfile:
    """Reliable, volatile, keep-last ``output.depth`` (any subscriber QoS can connect)."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=params.output_depth)


LABELS_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        history=HistoryPolicy.KEEP_LAST, depth=1)


def _stamp_ns(msg: Union[Image, CompressedImage]) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class VKNetNode(LifecycleNode):
    """The lifecycle node. ``pipeline_factory`` is for tests; the default loads the real model."""

    def __init__(self, node_name: str = NODE_NAME, *,
                 pipeline_factory: Optional[PipelineFactory] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self._factory: PipelineFactory = pipeline_factory or load_pipeline
        self.params: Optional[NodeParams] = None
        self.stats = NodeStats()
        self._loaded: Optional[LoadedPipeline] = None
        self._pubs: dict[str, Any] = {}
        self._labels_pub: Any = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer: Any = None
        self._subs: list[Any] = []
        # latest-frame slot: the callback overwrites, the worker takes
        self._slot: Optional[tuple[Union[Image, CompressedImage], float]] = None
        self._slot_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._pipe_lock = threading.Lock()  # the worker steps, the reset service resets
        self._last_stamp: Optional[int] = None
        self._last_hw: Optional[tuple[int, int]] = None
        self._last_logged: dict[str, float] = {}  # message -> monotonic time (log throttle)
        self.create_service(Trigger, "~/reset_tracks", self._on_reset)

    # ------------------------------------------------------------------ lifecycle transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters once and create the publishers. FAILURE on a bad parameter."""
        try:
            self.params = read_all(self)
        except ValueError as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        p = self.params
        qos_opts = QoSOverridingOptions.with_default_policies()
        for name in p.outputs + (("overlay",) if p.publish_overlay else ()):
            self._pubs[name] = self.create_lifecycle_publisher(
                Image, f"~/{name}", output_qos(p), qos_overriding_options=qos_opts)
        self._labels_pub = self.create_lifecycle_publisher(String, "~/labels", LABELS_QOS)
        self.get_logger().info(
            f"configured: backend={p.backend} model={p.model_path} device={p.device} "
            f"network={p.network_hw or 'camera size'} outputs={list(self._pubs)}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model, publish ~/labels, subscribe and start the worker.

        FAILURE (one error line; the node stays inactive and keeps serving) when the model
        cannot be loaded.
        """
        p = self.params
        assert p is not None, "activate before configure"
        try:
            loaded = self._factory(p)
        except Exception as e:  # ModelLoadError or anything a backend raises
            self.get_logger().error(f"activate failed: {e}")
            return TransitionCallbackReturn.FAILURE
        warm = warmup_image(p) if p.warmup else None
        if warm is not None:
            try:
                t0 = time.perf_counter()
                loaded.pipeline.step(warm)
                loaded.pipeline.reset()
                self.get_logger().info(f"warm-up frame {warm.shape[1]}x{warm.shape[0]}: "
                                       f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
            except Exception as e:
                loaded.close()
                self.get_logger().error(f"activate failed: warm-up inference raised "
                                        f"{type(e).__name__}: {e}")
                return TransitionCallbackReturn.FAILURE
        self._loaded = loaded
        self._last_stamp, self._last_hw = None, None
        ret = super().on_activate(state)  # activates the lifecycle publishers
        self._labels_pub.publish(labels_to_msg(
            loaded.class_names, loaded.thing_ids, loaded.palette, loaded.label_divisor,
            loaded.ignore_label))
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="vknet_worker", daemon=True)
        self._worker.start()
        qos_in = input_qos(p)
        qos_opts = QoSOverridingOptions.with_default_policies()
        self._subs.append(self.create_subscription(
            Image, "image", self._on_image, qos_in, qos_overriding_options=qos_opts))
        topics = [self.resolve_topic_name("image")]
        if p.subscribe_compressed:
            self._subs.append(self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, input_qos(p),
                qos_overriding_options=qos_opts))
            topics.append(self.resolve_topic_name("image/compressed"))
        self._diag_timer = self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"active ({loaded.backend_name} on {loaded.device}); waiting for images on "
            f"{', '.join(topics)} ({p.input_qos}, depth {p.input_depth}); publishing "
            f"{', '.join(self.resolve_topic_name('~/' + n) for n in self._pubs)}")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker and free the model (and its GPU memory)."""
        self._teardown_active()
        self.get_logger().info("deactivated: model freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_active()
        for pub in list(self._pubs.values()) + [self._labels_pub]:
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._pubs, self._labels_pub, self.params = {}, None, None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_active()
        return TransitionCallbackReturn.SUCCESS

    def _teardown_active(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        with self._slot_lock:
            self._slot = None
        with self._pipe_lock:
            if self._loaded is not None:
                try:
                    self._loaded.close()
                finally:
                    self._loaded = None
                    gc.collect()

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Union[Image, CompressedImage]) -> None:
        """Executor thread: keep only the latest frame; never blocks on inference."""
        self.stats.count("received")
        with self._slot_lock:
            if self._slot is not None:
                self.stats.count("dropped")
            self._slot = (msg, time.perf_counter())
        self._wake.set()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        with self._pipe_lock:
            if self._loaded is None:
                response.success, response.message = False, "node is not active; nothing to reset"
                return response
            self._loaded.pipeline.reset()
            self._last_stamp = None
        self.stats.count("resets")
        self.get_logger().info("tracks reset by ~/reset_tracks")
        response.success, response.message = True, "tracks reset"
        return response

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.1)
            with self._slot_lock:
                item, self._slot = self._slot, None
                self._wake.clear()
            if item is None or self._stop.is_set():
                continue
            try:
                self._process(*item)
            except Exception as e:  # never die in the worker: log, count, go on
                self.stats.error("errors", f"{type(e).__name__}: {e}")
                self._log_once("error", f"frame failed: {type(e).__name__}: {e}")

    def _log_once(self, level: str, text: str) -> None:
        """Log ``text`` at most once per ``_THROTTLE_S`` seconds (per distinct text)."""
        now = time.monotonic()
        if now - self._last_logged.get(text, -1e9) < _THROTTLE_S:
            return
        if len(self._last_logged) > 256:
            self._last_logged.clear()
        self._last_logged[text] = now
        getattr(self.get_logger(), level)(text)

    def _process(self, msg: Union[Image, CompressedImage], t_recv: float) -> None:
        t0 = time.perf_counter()
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ConversionError as e:
            self.stats.error("bad_input", str(e))
            self._log_once("warning", f"dropped frame: {e}")
            return
        t1 = time.perf_counter()
        with self._pipe_lock:
            loaded = self._loaded
            if loaded is None:
                return
            self._maybe_reset(loaded, msg, rgb.shape[:2])
            frame = loaded.pipeline.step(rgb)
        t2 = time.perf_counter()
        p = self.params
        assert p is not None
        msgs = frame_to_images(frame, msg.header, p.outputs)
        overlay_pub = self._pubs.get("overlay")
        if overlay_pub is not None and overlay_pub.get_subscription_count() > 0:
            msgs["overlay"] = array_to_image(loaded.overlay(rgb, frame), "rgb8", msg.header)
        t3 = time.perf_counter()
        for name, out in msgs.items():
            self._pubs[name].publish(out)
        t4 = time.perf_counter()
        now_ns = self.get_clock().now().nanoseconds
        self.stats.record({
            "decode": (t1 - t0) * 1e3, "pipeline": (t2 - t1) * 1e3, "encode": (t3 - t2) * 1e3,
            "publish": (t4 - t3) * 1e3, "total": (t4 - t_recv) * 1e3,
            "latency": (now_ns - _stamp_ns(msg)) / 1e6,
        })

    def _maybe_reset(self, loaded: LoadedPipeline, msg: Union[Image, CompressedImage],
                     hw: tuple[int, int]) -> None:
        """Reset the tracks when time jumps back (bag loop, sim reset) or the size changes."""
        stamp = _stamp_ns(msg)
        reason = None
        if self._last_stamp is not None and stamp < self._last_stamp:
            reason = (f"time jumped back by {(self._last_stamp - stamp) / 1e9:.3f} s")
        elif self._last_hw is not None and hw != self._last_hw:
            reason = (f"resolution changed from {self._last_hw[1]}x{self._last_hw[0]} to "
                      f"{hw[1]}x{hw[0]}")
        if reason is not None:
            loaded.pipeline.reset()
            self.stats.count("resets")
            self.get_logger().info(f"{reason}: tracks reset")
        self._last_stamp, self._last_hw = stamp, hw

    def _publish_diagnostics(self) -> None:
        loaded, p = self._loaded, self.params
        info = {}
        if loaded is not None and p is not None:
            info = {"backend": loaded.backend_name, "model": loaded.model_path,
                    "device": loaded.device,
                    "network_size": "camera" if p.network_hw is None
                    else f"{p.network_hw[1]}x{p.network_hw[0]}"}
        status = self.stats.to_status(f"{self.get_name()}: video panoptic segmentation",
                                      self.get_fully_qualified_name(), info)
        self._diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))


def autostart(node: VKNetNode) -> bool:
    """configure + activate, as ``launch_ros`` LifecycleNode(autostart=True) does. True if active."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: configure failed; node stays unconfigured")
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error("autostart: activate failed; node stays inactive (fix the "
                                "parameters, then: ros2 lifecycle set <node> activate)")
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
