"""The node's parameters: declared once with descriptions, read once into ``NodeParams``.

Algorithm code never sees ``rclpy.Parameter``: the node calls ``declare_all(node)`` in its
constructor and ``read_all(node)`` in ``on_configure`` and again in ``on_activate``: a parameter
set while the node is unconfigured or inactive takes effect on the next activate, except the
publisher parameters (``CONFIGURE_ONLY``), whose change is rejected with the reason while the
node is configured (``cleanup`` first). ``config/vknet.yaml`` lists them all.

Merge and tracker thresholds are declared from the fields of ``vknet_core``'s ``MergeConfig`` and
``TrackerConfig`` (``merge.<field>``, ``tracker.<field>``) so the YAML can set any of them and the
defaults are the core's defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from vknet_export.backends import BACKENDS  # the backend names, defined once

INPUT_QOS: tuple[str, ...] = ("auto", "sensor_data", "reliable")
DEFAULT_MODEL: Path = Path(__file__).resolve().parent / "models" / "tiny_synthetic.pt"


@dataclass(frozen=True)
class NodeParams:
    """Everything the node reads from ROS parameters (ROS names in the comments)."""

    backend: str = "torch"  # backend: torch | onnxruntime | tensorrt
    model: str = ""  # model: checkpoint (.pt), ONNX (.onnx) or engine path; "" = shipped tiny
    device: str = "cpu"  # device: cpu | cuda | cuda:N
    network_height: int = 0  # network.height: 0 = camera size, bounded by the preset's native
    network_width: int = 0  # network.width
    publish_panoptic: bool = True  # outputs.panoptic
    publish_instance_ids: bool = True  # outputs.instance_ids
    publish_semantic: bool = True  # outputs.semantic
    publish_overlay: bool = True  # outputs.overlay (computed only while someone subscribes)
    subscribe_compressed: bool = False  # input.compressed: also subscribe image/compressed
    input_qos: str = "auto"  # input.qos: auto (reliable; best effort for best-effort cameras)
    input_depth: int = 1  # input.depth
    max_pixels: int = 4096 * 4096  # input.max_pixels: larger frames are rejected before decoding
    camera_info: bool = True  # input.camera_info: republish camera_info on ~/camera_info
    output_depth: int = 1  # output.depth (outputs are reliable, volatile)
    diagnostics_period: float = 1.0  # diagnostics.period [s]
    diagnostics_window: float = 5.0  # diagnostics.window [s]: the rate covers this window
    expected_rate: float = 0.0  # diagnostics.expected_rate [Hz]: 0 = not checked
    rate_tolerance: float = 0.1  # diagnostics.rate_tolerance: WARN below (1 - tol) * expected
    stale_timeout: float = 10.0  # diagnostics.stale_timeout [s]: no frame -> STALE
    warmup: bool = True  # warmup: one dummy inference on activate (steady first-frame latency)
    merge: tuple[tuple[str, Any], ...] = ()  # merge.<field>: MergeConfig overrides
    tracker: tuple[tuple[str, Any], ...] = ()  # tracker.<field>: TrackerConfig overrides

    @property
    def model_path(self) -> Path:
        return Path(self.model).expanduser() if self.model else DEFAULT_MODEL

    @property
    def network_hw(self) -> Optional[tuple[int, int]]:
        if self.network_height <= 0 or self.network_width <= 0:
            return None
        return (self.network_height, self.network_width)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The always-computed image outputs (overlay is lazy and handled apart)."""
        flags = (
            ("panoptic", self.publish_panoptic),
            ("instance_ids", self.publish_instance_ids),
            ("semantic", self.publish_semantic),
        )
        return tuple(name for name, on in flags if on)

    def validate(self) -> NodeParams:
        """Raise ``ValueError`` naming the parameter, the value received and what is allowed."""
        if self.backend not in BACKENDS:
            raise ValueError(f"parameter backend={self.backend!r}; expected one of {BACKENDS}")
        if self.input_qos not in INPUT_QOS:
            raise ValueError(
                f"parameter input.qos={self.input_qos!r}; expected one of {INPUT_QOS}"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"parameter device={self.device!r}; expected cpu, cuda or cuda:N")
        for name, v in (
            ("network.height", self.network_height),
            ("network.width", self.network_width),
        ):
            if v < 0 or v % 32:
                raise ValueError(
                    f"parameter {name}={v}; expected 0 (camera size) or a positive multiple of 32"
                )
        if (self.network_height > 0) != (self.network_width > 0):
            raise ValueError(
                "parameters network.height and network.width must both be 0 or both "
                f"> 0, got {self.network_height}x{self.network_width}"
            )
        for name, v in (("input.depth", self.input_depth), ("output.depth", self.output_depth)):
            if v < 1:
                raise ValueError(f"parameter {name}={v}; expected >= 1")
        for name, v in (
            ("diagnostics.period", self.diagnostics_period),
            ("diagnostics.window", self.diagnostics_window),
            ("diagnostics.stale_timeout", self.stale_timeout),
        ):
            if v <= 0:
                raise ValueError(f"parameter {name}={v}; expected > 0")
        if self.expected_rate < 0 or not 0 <= self.rate_tolerance < 1:
            raise ValueError(
                f"parameters diagnostics.expected_rate={self.expected_rate} and "
                f"diagnostics.rate_tolerance={self.rate_tolerance}; expected >= 0 "
                "and in [0, 1)"
            )
        if self.max_pixels < 1:
            raise ValueError(f"parameter input.max_pixels={self.max_pixels}; expected >= 1")
        return self


# ROS name -> (NodeParams field, description)
_SCALARS: dict[str, tuple[str, str]] = {
    "backend": ("backend", "inference backend: torch | onnxruntime | tensorrt"),
    "model": (
        "model",
        "model file: checkpoint .pt (torch), .onnx (onnxruntime) or TensorRT "
        "engine; empty = the shipped tiny model",
    ),
    "device": ("device", "cpu, cuda or cuda:N"),
    "network.height": (
        "network_height",
        "network input height (multiple of 32); 0 = camera "
        "size scaled down, aspect kept, to fit the model's "
        "native size (KITTI-STEP 384x1248), padded to 32",
    ),
    "network.width": ("network_width", "network input width (multiple of 32); 0 = camera width"),
    "outputs.panoptic": ("publish_panoptic", "publish ~/panoptic (32SC1)"),
    "outputs.instance_ids": ("publish_instance_ids", "publish ~/instance_ids (16UC1)"),
    "outputs.semantic": ("publish_semantic", "publish ~/semantic (mono8)"),
    "outputs.overlay": ("publish_overlay", "publish ~/overlay (rgb8) while it has subscribers"),
    "input.compressed": (
        "subscribe_compressed",
        "also subscribe image/compressed (sensor_msgs/CompressedImage)",
    ),
    "input.qos": (
        "input_qos",
        "input QoS: auto (reliable, switching to best effort when a "
        "best-effort camera appears) | sensor_data (best effort) | "
        "reliable",
    ),
    "input.depth": ("input_depth", "input QoS history depth"),
    "input.max_pixels": (
        "max_pixels",
        "frames with width*height above this are rejected (one log line) before decoding",
    ),
    "input.camera_info": (
        "camera_info",
        "subscribe camera_info (next to image) and republish "
        "the one with the frame's stamp on ~/camera_info",
    ),
    "output.depth": ("output_depth", "output QoS history depth (reliable, volatile)"),
    "diagnostics.period": ("diagnostics_period", "seconds between /diagnostics messages"),
    "diagnostics.window": ("diagnostics_window", "seconds the reported rate covers"),
    "diagnostics.expected_rate": (
        "expected_rate",
        "expected processed frames per second; WARN below it (0 = not checked)",
    ),
    "diagnostics.rate_tolerance": ("rate_tolerance", "WARN below (1 - tolerance) * expected_rate"),
    "diagnostics.stale_timeout": (
        "stale_timeout",
        "seconds without a processed frame before the status goes STALE",
    ),
    "warmup": ("warmup", "run one dummy frame on activate"),
}
AUTOSTART = "autostart"
# read only on configure (they shape the publishers): rejected while the node is configured
CONFIGURE_ONLY: frozenset[str] = frozenset(
    {
        "outputs.panoptic",
        "outputs.instance_ids",
        "outputs.semantic",
        "outputs.overlay",
        "output.depth",
    }
)
# parity-only switches of the core configs that a deployed node must not expose
_HIDDEN: frozenset[str] = frozenset(
    {"void_as_road", "official_paint_order", "semantic_filter_crop"}
)  # read by main(): configure + activate at startup


def core_defaults() -> dict[str, dict[str, Any]]:
    """Scalar fields of vknet_core's MergeConfig / TrackerConfig with their defaults."""
    out: dict[str, dict[str, Any]] = {"merge": {}, "tracker": {}}
    for group, module, cls in (
        ("merge", "vknet_core.postprocess.panoptic", "MergeConfig"),
        ("tracker", "vknet_core.tracking.tracker", "TrackerConfig"),
    ):
        try:
            mod = __import__(module, fromlist=[cls])
            cfg = getattr(mod, cls)()
        except (ImportError, AttributeError):
            continue
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if isinstance(v, (bool, int, float, str)) and f.name not in _HIDDEN:
                out[group][f.name] = v
    return out


def declare_all(node: Any) -> None:
    """Declare every parameter on ``node`` (an rclpy Node) with a description."""
    from rcl_interfaces.msg import ParameterDescriptor

    d = NodeParams()
    for ros_name, (field, desc) in _SCALARS.items():
        node.declare_parameter(
            ros_name, getattr(d, field), ParameterDescriptor(description=desc, dynamic_typing=True)
        )
    node.declare_parameter(
        AUTOSTART,
        True,
        ParameterDescriptor(description="configure and activate at startup (lifecycle autostart)"),
    )
    for group, fields in core_defaults().items():
        for name, v in fields.items():
            node.declare_parameter(
                f"{group}.{name}",
                v,
                ParameterDescriptor(
                    description=f"vknet_core {group} option {name} (default {v!r})",
                    dynamic_typing=True,
                ),
            )


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A YAML value -> the default's type (1 -> 1.0 for a float); ``ValueError`` otherwise."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, type(default)):
        return value
    raise ValueError(
        f"parameter {name}={value!r} ({type(value).__name__}); expected a "
        f"{type(default).__name__} like the default {default!r}"
    )


def read_all(node: Any) -> NodeParams:
    """Read the declared parameters into a validated ``NodeParams`` (raises ``ValueError``)."""
    d = NodeParams()
    kw: dict[str, Any] = {
        field: _coerce(ros_name, node.get_parameter(ros_name).value, getattr(d, field))
        for ros_name, (field, _) in _SCALARS.items()
    }
    groups = core_defaults()
    for group in ("merge", "tracker"):
        kw[group] = tuple(
            (name, _coerce(f"{group}.{name}", node.get_parameter(f"{group}.{name}").value, v))
            for name, v in groups[group].items()
        )
    return NodeParams(**kw).validate()


def configure_only_refusal(
    names: Sequence[str], configured: bool, state: str, fqn: str
) -> Optional[str]:
    """Why a change of ``names`` must be refused now, or None: the parameters in
    ``CONFIGURE_ONLY`` shape the publishers, so they can change only while unconfigured."""
    late = sorted(n for n in names if n in CONFIGURE_ONLY)
    if not late or not configured:
        return None
    return (
        f"{', '.join(late)} shape the publishers and are read on configure; the node is "
        f"{state}: run `ros2 lifecycle set {fqn} cleanup` (after deactivate), set it, then "
        "configure and activate"
    )
