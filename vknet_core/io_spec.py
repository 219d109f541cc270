"""The per-frame contract (DESIGN §3.2) in one place: names, shapes, dtypes, zero state, feeds.

B batch (always 1 in the exported graph), N kernels, C channels, Q thing kernels, K classes,
E embedding channels, H x W network input, h x w = H/8 x W/8.

Everything that exports, runs or checks the graph (the model's ``FrameOutputs``, ``to_onnx``,
``to_trt``, every ``Backend``, the pipeline, the compare/benchmark scripts and the tests) takes
names and shapes from here::

    spec = io_spec(cfg, height=384, width=1248)
    feeds = dummy_inputs(spec, seed=0)          # {"image": uint8 [1,H,W,3], ...}
    check_feeds(spec, feeds)                    # ValueError naming what was received
    state = initial_state(spec)                 # first frame: zero kernels, has_prev = 0

The model config and network size travel with an exported graph as string metadata
(``graph_metadata`` / ``from_metadata``; keys ``META_*``), so a graph alone rebuilds its spec.
Framework-free: numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from vknet_core.config import VKNetConfig

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "STRIDE",
    "META_CONFIG",
    "META_HEIGHT",
    "META_WIDTH",
    "META_DYNAMIC",
    "TensorSpec",
    "IOSpec",
    "io_spec",
    "dummy_inputs",
    "check_feeds",
    "initial_state",
    "graph_metadata",
    "from_metadata",
]

INPUT_NAMES: tuple[str, ...] = ("image", "prev_kernels", "has_prev")
OUTPUT_NAMES: tuple[str, ...] = (
    "cls_prob",
    "mask_logits",
    "cur_kernels",
    "track_embed",
    "sem_logits",
)
# ONNX metadata_props keys written by export/to_onnx.py (values are strings)
META_CONFIG, META_HEIGHT, META_WIDTH, META_DYNAMIC = (
    "vknet_config",
    "vknet_height",
    "vknet_width",
    "vknet_dynamic",
)

STRIDE = 8  # mask_logits / sem_logits are at stride 8 of the network input

Dim = Union[int, str]  # a fixed size or a symbolic name ("height", "width", "h8", "w8")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` entries are ints, or names for dynamic axes."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name: "uint8" | "float32"

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def matches(self, shape: tuple[int, ...]) -> bool:
        """True when a concrete ``shape`` fits (symbolic dims accept any positive size)."""
        return len(shape) == len(self.shape) and all(
            (d == s) if isinstance(d, int) else s > 0 for d, s in zip(self.shape, shape)
        )


@dataclass(frozen=True)
class IOSpec:
    """Inputs and outputs of one exported per-frame graph.

    ``height``/``width`` are the export size (also the sample size of a dynamic graph; 0 when a
    dynamic graph has none, e.g. the PyTorch model); ``dynamic`` says whether H and W are free
    axes (multiples of 32).
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    height: int
    width: int
    dynamic: bool = False

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, "input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, "output")

    @property
    def num_kernels(self) -> int:
        return int(self.input("prev_kernels").shape[1])

    @property
    def channels(self) -> int:
        return int(self.input("prev_kernels").shape[2])

    def dynamic_axes(self) -> Optional[dict[str, dict[int, str]]]:
        """``torch.onnx.export`` dynamic_axes for the symbolic dims, or None when static."""
        if not self.dynamic:
            return None
        axes = {}
        for t in self.inputs + self.outputs:
            named = {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            if named:
                axes[t.name] = named
        return axes

    def concrete(self, height: int, width: int) -> IOSpec:
        """The same spec with H, W fixed (for a dynamic graph run at one size)."""
        _check_size(height, width)
        sizes = {"height": height, "width": width, "h8": height // STRIDE, "w8": width // STRIDE}

        def fix(t: TensorSpec) -> TensorSpec:
            return TensorSpec(
                t.name,
                tuple(sizes.get(d, d) if isinstance(d, str) else d for d in t.shape),
                t.dtype,
            )

        return IOSpec(tuple(map(fix, self.inputs)), tuple(map(fix, self.outputs)), height, width)


def _by_name(specs: tuple[TensorSpec, ...], name: str, kind: str) -> TensorSpec:
    for t in specs:
        if t.name == name:
            return t
    raise KeyError(f"no graph {kind} named {name!r}; expected one of {[t.name for t in specs]}")


def _check_size(height: int, width: int, divisor: int = 32) -> None:
    if height <= 0 or width <= 0 or height % divisor or width % divisor:
        raise ValueError(
            f"network size must be positive multiples of {divisor}, got {height}x{width}"
        )


def io_spec(cfg: VKNetConfig, height: int = 0, width: int = 0, dynamic: bool = False) -> IOSpec:
    """I/O of the per-frame graph of ``cfg`` at network size ``height`` x ``width``.

    Inputs:  image uint8 [1,H,W,3] RGB, prev_kernels float32 [1,N,C], has_prev float32 [1].
    Outputs: cls_prob [1,N,K], mask_logits [1,N,h,w], cur_kernels [1,N,C], track_embed [1,Q,E],
             sem_logits [1,K,h,w], all float32 (h, w = H/8, W/8).
    A dynamic spec may leave the sample size out (``height = width = 0``).
    """
    if not (dynamic and height == width == 0):
        _check_size(height, width, cfg.size_divisor)
    N, C = cfg.num_kernels, cfg.neck.channels
    K, Q, E = cfg.labels.num_classes, cfg.head.num_thing_kernels, cfg.video.embed_channels
    H, W = ("height", "width") if dynamic else (height, width)
    h, w = ("h8", "w8") if dynamic else (height // STRIDE, width // STRIDE)
    inputs = (
        TensorSpec("image", (1, H, W, 3), "uint8"),
        TensorSpec("prev_kernels", (1, N, C), "float32"),
        TensorSpec("has_prev", (1,), "float32"),
    )
    outputs = (
        TensorSpec("cls_prob", (1, N, K), "float32"),
        TensorSpec("mask_logits", (1, N, h, w), "float32"),
        TensorSpec("cur_kernels", (1, N, C), "float32"),
        TensorSpec("track_embed", (1, Q, E), "float32"),
        TensorSpec("sem_logits", (1, K, h, w), "float32"),
    )
    assert tuple(t.name for t in inputs) == INPUT_NAMES
    assert tuple(t.name for t in outputs) == OUTPUT_NAMES
    return IOSpec(inputs, outputs, height, width, dynamic)


def initial_state(spec: IOSpec) -> dict[str, np.ndarray]:
    """First-frame state: prev_kernels zeros [1,N,C], has_prev [0.0]."""
    return {
        "prev_kernels": np.zeros((1, spec.num_kernels, spec.channels), np.float32),
        "has_prev": np.zeros((1,), np.float32),
    }


def dummy_inputs(spec: IOSpec, seed: int = 0, has_prev: bool = False) -> dict[str, np.ndarray]:
    """Random feeds of the right names, shapes and dtypes (at the export size).

    ``has_prev=True`` gives a random non-zero state, so the linking path is exercised.
    """
    if spec.height <= 0 or spec.width <= 0:
        raise ValueError("this dynamic spec has no sample size; use spec.concrete(height, width)")
    rng = np.random.default_rng(seed)
    H, W = spec.height, spec.width
    feeds = {"image": rng.integers(0, 256, size=(1, H, W, 3), dtype=np.uint8)}
    feeds.update(initial_state(spec))
    if has_prev:
        feeds["prev_kernels"] = rng.standard_normal(feeds["prev_kernels"].shape).astype(np.float32)
        feeds["has_prev"] = np.ones((1,), np.float32)
    return feeds


def check_feeds(spec: IOSpec, feeds: Mapping[str, np.ndarray]) -> None:
    """Raise ValueError unless ``feeds`` has exactly the graph inputs with their dtypes/shapes."""
    names = set(feeds)
    expected = {t.name for t in spec.inputs}
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        raise ValueError(
            f"feeds must be exactly {list(INPUT_NAMES)}; missing {missing}, unexpected {extra}"
        )
    for t in spec.inputs:
        a = feeds[t.name]
        if not isinstance(a, np.ndarray):
            raise ValueError(f"input {t.name!r} must be a numpy array, got {type(a).__name__}")
        if a.dtype != np.dtype(t.dtype):
            raise ValueError(f"input {t.name!r} must be {t.dtype}, got {a.dtype}")
        if not t.matches(a.shape):
            raise ValueError(
                f"input {t.name!r} has shape {list(a.shape)}, expected {list(t.shape)}"
            )
    if spec.dynamic:
        H, W = feeds["image"].shape[1:3]
        _check_size(H, W)


def graph_metadata(cfg: VKNetConfig, spec: IOSpec) -> dict[str, str]:
    """The string metadata an exported graph carries (ONNX ``metadata_props``)."""
    return {
        META_CONFIG: json.dumps(cfg.to_dict()),
        META_HEIGHT: str(spec.height),
        META_WIDTH: str(spec.width),
        META_DYNAMIC: str(int(spec.dynamic)),
    }


def from_metadata(meta: Mapping[str, str], source: str = "graph") -> tuple[VKNetConfig, IOSpec]:
    """Inverse of ``graph_metadata``: the model config and I/O spec of an exported graph.

    ValueError naming ``source`` and the keys present when the vknet keys are missing or bad.
    """
    if META_CONFIG not in meta:
        raise ValueError(
            f"{source} has no vknet metadata (was it written by "
            f"export/to_onnx.py?); keys present: {sorted(meta)}"
        )
    try:
        cfg = VKNetConfig.from_dict(json.loads(meta[META_CONFIG]))
        spec = io_spec(
            cfg,
            int(meta.get(META_HEIGHT, 0)),
            int(meta.get(META_WIDTH, 0)),
            dynamic=bool(int(meta.get(META_DYNAMIC, 0))),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source} has corrupt vknet metadata: {type(e).__name__}: {e}") from e
    return cfg, spec
