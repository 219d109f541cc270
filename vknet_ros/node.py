"""``vknet_node``: online video panoptic segmentation of camera images (DESIGN §3.4).

A thin rclpy lifecycle node over the framework-free ``VideoPanopticPipeline``:

  image (sensor_msgs/Image, input.qos, depth 1)       ─┐ callback stores only the latest frame
  image/compressed (optional)                          ─┘ (a replaced frame counts as dropped;
                                                           width*height > input.max_pixels is
                                                           rejected before decoding)
  camera_info (optional) ─ kept by stamp; republished on ~/camera_info with each output
  worker thread: decode ─ pipeline.step ─ encode ─ publish, every output with the input header
    ~/panoptic 32SC1 · ~/instance_ids 16UC1 · ~/semantic mono8 · ~/overlay rgb8 (while subscribed)
  ~/labels (std_msgs/String JSON, reliable + transient local) · /diagnostics (1 Hz, in every
  lifecycle state; status name and hardware_id carry the fully qualified node name)
  ~/reset_tracks (std_srvs/Trigger); tracks also reset on a time jump back or a resolution change

Lifecycle: configure reads parameters and creates publishers; activate re-reads them (a change
made while inactive applies here; publisher parameters are rejected while configured), loads the
model and subscribes; deactivate unsubscribes and frees the model. ``autostart`` (default true)
runs configure + activate at startup. A failure logs one line and leaves the node up and serving.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any, Optional, Union

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from vknet_core.sequence_break import SequenceBreaks
from vknet_ros.conversions import (
    ConversionError,
    array_to_image,
    compressed_to_rgb,
    frame_to_images,
    image_to_rgb,
    labels_to_msg,
)
from vknet_ros.diagnostics import NodeStats, diagnostic_array, node_status
from vknet_ros.loader import LoadedPipeline, load_pipeline, warm_up
from vknet_ros.log_throttle import LogThrottle
from vknet_ros.params import (
    NodeParams,
    configure_only_refusal,
    declare_all,
    read_all,
)
from vknet_ros.qos import LABELS_QOS, InputSubscriptions, output_qos

NODE_NAME = "vknet_node"
PipelineFactory = Callable[[NodeParams], LoadedPipeline]
_THROTTLE_S = 5.0


def _oversize(width: int, height: int, what: str, max_pixels: int) -> Optional[str]:
    """Why a frame over ``input.max_pixels`` is rejected, or None when it fits."""
    if width * height <= max_pixels:
        return None
    return (
        f"{width}x{height} ({what}) is {width * height} pixels, over "
        f"input.max_pixels = {max_pixels}"
    )


def _stamp_ns(msg: Union[Image, CompressedImage]) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class VKNetNode(LifecycleNode):
    """The lifecycle node. ``pipeline_factory`` is for tests; the default loads the real model."""

    def __init__(
        self,
        node_name: str = NODE_NAME,
        *,
        pipeline_factory: Optional[PipelineFactory] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self._factory: PipelineFactory = pipeline_factory or load_pipeline
        self.params: Optional[NodeParams] = None
        self.stats = NodeStats()
        self._loaded: Optional[LoadedPipeline] = None
        self._pubs: dict[str, Any] = {}
        self._labels_pub: Any = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._state, self._failure = "unconfigured", ""  # lifecycle state, last failed transition
        self._info_pub: Any = None
        self._infos: dict[int, CameraInfo] = {}  # stamp -> camera_info (the latest 30)
        self._inputs: Optional[InputSubscriptions] = None
        # latest-frame slot: the callback overwrites, the worker takes
        self._slot: Optional[tuple[Union[Image, CompressedImage], float]] = None
        self._slot_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._pipe_lock = threading.Lock()  # the worker steps, the reset service resets
        self._breaks = SequenceBreaks()  # stamp back / resolution change -> reset tracks
        self._log_once = LogThrottle(self.get_logger(), _THROTTLE_S).log
        self.create_service(Trigger, "~/reset_tracks", self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_timer = self.create_timer(
            float(self.get_parameter("diagnostics.period").value), self._publish_diagnostics
        )

    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        """Publisher parameters are read on configure only: refuse them while configured."""
        reason = configure_only_refusal(
            [c.name for c in changes],
            self.params is not None,
            self._state,
            self.get_fully_qualified_name(),
        )
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _fail(self, what: str, error: str) -> TransitionCallbackReturn:
        """One error line with a true hint; the status turns ERROR with the text."""
        fqn = self.get_fully_qualified_name()
        self._failure = f"{what} failed: {error}"
        self.get_logger().error(
            f"{self._failure} (fix it with `ros2 param set {fqn} <name> <value>`, then "
            f"`ros2 lifecycle set {fqn} {what}`: parameters are re-read on {what})"
        )
        return TransitionCallbackReturn.FAILURE

    # ------------------------------------------------------------------ lifecycle transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters once and create the publishers. FAILURE on a bad parameter."""
        try:
            self.params = read_all(self)
        except ValueError as e:
            return self._fail("configure", str(e))
        p = self.params
        qos_opts = QoSOverridingOptions.with_default_policies()
        for name in p.outputs + (("overlay",) if p.publish_overlay else ()):
            self._pubs[name] = self.create_lifecycle_publisher(
                Image, f"~/{name}", output_qos(p), qos_overriding_options=qos_opts
            )
        self._labels_pub = self.create_lifecycle_publisher(String, "~/labels", LABELS_QOS)
        if p.camera_info:
            self._info_pub = self.create_lifecycle_publisher(
                CameraInfo, "~/camera_info", output_qos(p), qos_overriding_options=qos_opts
            )
        self._state, self._failure = "inactive", ""
        self.get_logger().info(
            f"configured: backend={p.backend} model={p.model_path} device={p.device} "
            f"network={p.network_hw or 'camera size'} outputs={list(self._pubs)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model, publish ~/labels, subscribe and start the worker.

        FAILURE (one error line; the node stays inactive and keeps serving) when the model
        cannot be loaded.
        """
        assert self.params is not None, "activate before configure"
        try:  # parameters set while inactive apply now (publisher ones cannot change here)
            self.params = p = read_all(self)
        except ValueError as e:
            return self._fail("activate", str(e))
        try:
            loaded = self._factory(p)
        except Exception as e:  # ModelLoadError or anything a backend raises
            return self._fail("activate", str(e))
        try:
            line = warm_up(loaded, p)
        except Exception as e:
            loaded.close()
            return self._fail("activate", f"warm-up inference raised {type(e).__name__}: {e}")
        if line is not None:
            self.get_logger().info(line)
        self._loaded = loaded
        self._breaks.forget()
        ret = super().on_activate(state)  # activates the lifecycle publishers
        self._labels_pub.publish(
            labels_to_msg(
                loaded.class_names,
                loaded.thing_ids,
                loaded.palette,
                loaded.label_divisor,
                loaded.ignore_label,
            )
        )
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="vknet_worker", daemon=True)
        self._worker.start()
        wanted: list[tuple[Any, str, Callable[[Any], None]]] = [(Image, "image", self._on_image)]
        if p.subscribe_compressed:
            wanted.append((CompressedImage, "image/compressed", self._on_image))
        if p.camera_info:  # next to the image topic, as image_transport's CameraSubscriber
            wanted.append((CameraInfo, "camera_info", self._on_camera_info))
        self._inputs = InputSubscriptions(self, p, wanted)
        self._infos = {}
        self.stats.activated()
        self._state, self._failure = "active", ""
        self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"active ({loaded.backend_name} on {loaded.device}); waiting for images on "
            f"{', '.join(self._inputs.topics())} ({p.input_qos}, depth {p.input_depth}); "
            "publishing "
            f"{', '.join(self.resolve_topic_name('~/' + n) for n in self._pubs)}"
        )
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker and free the model (and its GPU memory)."""
        self._teardown_active()
        self._state = "inactive"
        self.get_logger().info("deactivated: model freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_active()
        for pub in list(self._pubs.values()) + [self._labels_pub, self._info_pub]:
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._pubs, self._labels_pub, self._info_pub, self.params = {}, None, None, None
        self._state, self._failure = "unconfigured", ""
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_active()
        self._state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _teardown_active(self) -> None:
        if self._inputs is not None:
            self._inputs.destroy()
            self._inputs = None
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
        """Executor thread: keep only the latest frame; never blocks on inference.

        A raw frame whose header claims more than ``input.max_pixels`` is rejected here, from
        ``width * height`` alone, before anything is decoded or allocated.
        """
        self.stats.count("received")
        p = self.params
        if isinstance(msg, Image) and p is not None:
            text = _oversize(int(msg.width), int(msg.height), msg.encoding, p.max_pixels)
            if text is not None:
                self._reject(text)
                return
        with self._slot_lock:
            if self._slot is not None:
                self.stats.count("dropped")
            self._slot = (msg, time.perf_counter())
        self._wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._slot_lock:
            self._infos[_stamp_ns(msg)] = msg
            while len(self._infos) > 30:
                del self._infos[min(self._infos)]

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._pipe_lock:
            if self._loaded is None:
                response.success, response.message = False, "node is not active; nothing to reset"
                return response
            self._loaded.pipeline.reset()
            self._breaks.forget()
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

    def _reject(self, error: str) -> None:
        """A bad input frame: counted in ``frames_bad_input`` (``error`` is the diagnostics'
        last error) and logged once per 5 s per distinct error."""
        self.stats.error("bad_input", error)
        self._log_once("warning", f"dropped frame: {error}")

    def _process(self, msg: Union[Image, CompressedImage], t_recv: float) -> None:
        t0 = time.perf_counter()
        p = self.params
        assert p is not None
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ConversionError as e:
            self._reject(str(e))
            return
        if isinstance(msg, CompressedImage):  # its size is known only now
            text = _oversize(rgb.shape[1], rgb.shape[0], "compressed", p.max_pixels)
            if text is not None:
                self._reject(text)
                return
        t1 = time.perf_counter()
        with self._pipe_lock:
            loaded = self._loaded
            if loaded is None:
                return
            self._maybe_reset(loaded, msg, rgb.shape[:2])
            frame = loaded.pipeline.step(rgb)
        t2 = time.perf_counter()
        msgs = frame_to_images(frame, msg.header, p.outputs)
        overlay_pub = self._pubs.get("overlay")
        if overlay_pub is not None and overlay_pub.get_subscription_count() > 0:
            msgs["overlay"] = array_to_image(loaded.overlay(rgb, frame), "rgb8", msg.header)
        t3 = time.perf_counter()
        for name, out in msgs.items():
            self._pubs[name].publish(out)
        if self._info_pub is not None:
            with self._slot_lock:
                info = self._infos.get(_stamp_ns(msg))
            if info is not None:  # same stamp: the camera_info of this frame
                info.header = msg.header
                self._info_pub.publish(info)
        t4 = time.perf_counter()
        now_ns = self.get_clock().now().nanoseconds
        self.stats.record(
            {
                "decode": (t1 - t0) * 1e3,
                "pipeline": (t2 - t1) * 1e3,
                "encode": (t3 - t2) * 1e3,
                "publish": (t4 - t3) * 1e3,
                "total": (t4 - t_recv) * 1e3,
                "latency": (now_ns - _stamp_ns(msg)) / 1e6,
            }
        )

    def _maybe_reset(
        self, loaded: LoadedPipeline, msg: Union[Image, CompressedImage], hw: tuple[int, int]
    ) -> None:
        """Reset the tracks when time jumps back (bag loop, sim reset) or the size changes."""
        reason = self._breaks.check(_stamp_ns(msg), hw)  # the offline bag tool's rule too
        if reason is not None:
            loaded.pipeline.reset()
            self.stats.count("resets")
            self.get_logger().info(f"{reason}: tracks reset")

    def _publish_diagnostics(self) -> None:
        """One status in every lifecycle state (see ``diagnostics.node_status``)."""
        if self._inputs is not None:
            self._inputs.poll()  # input.qos=auto: a best-effort camera appeared
        status = node_status(
            self.get_fully_qualified_name(),
            self._state,
            self._failure,
            self._loaded,
            self.params,
            self.stats,
        )
        self._diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))
