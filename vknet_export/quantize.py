"""Static int8 quantization of an exported per-frame graph for ONNX Runtime on CPU.

    from vknet_export.quantize import RECIPES, quantize_onnx
    info = quantize_onnx("m.onnx", "m_int8.onnx", sequences, RECIPES["conv"])

``sequences``: calibration clips, each an iterable of camera frames (uint8 [H, W, 3] RGB) in time
order. Every frame is fitted to the graph's input like the pipeline does
(``vknet_core.preprocess.to_model_input``) and the kernel state is fed back while calibrating:
frame 0 of a clip gets zero ``prev_kernels`` and ``has_prev`` = 0, later frames get the previous
frame's ``cur_kernels`` (from the fp32 graph) and ``has_prev`` = 1, so the ranges of the
tracking/linking path are those of real video.

The output is a QDQ graph (QuantizeLinear/DequantizeLinear around the quantized ops) with the
same inputs, outputs and vknet metadata as the fp32 graph, plus ``vknet_quantization`` (the
recipe and calibration counts as JSON). ``OrtBackend``, ``make_backend("onnxruntime", ...)``,
``training/evaluate.py --onnx`` and the ROS node run it unchanged. The accuracy report and the
command line are in ``vknet_training.quantize`` (they need the dataset readers and metrics).

Recipe (README "int8"): only ``Conv`` outside the head is quantized (nearly all FLOPs: backbone,
FPN, semantic FPN; the head 1x1 convs, kernel-update attention, LayerNorms, softmaxes stay fp32;
quantizing every op took STQ to 0.001), weights int8 per output channel with ``reduce_range``
(7-bit weights: no saturation in the u8 x s8 AVX2 dot product), activations uint8 asymmetric,
ranges by MinMax on the calibration frames.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vknet_core.atomic import atomic_path
from vknet_core.preprocess import PreprocessConfig, to_model_input
from vknet_export.to_onnx import read_metadata  # also used by vknet_training.quantize

log = logging.getLogger(__name__)

META_QUANT = "vknet_quantization"


@dataclass(frozen=True)
class QuantRecipe:
    """What ``onnxruntime.quantization.quantize_static`` is asked to do.

    op_types: ONNX op types to quantize (all others stay fp32); exclude: node-name prefixes
    kept fp32 even so; calibrate_method: "MinMax", "Entropy" or "Percentile"; activation_type /
    weight_type: "QUInt8" or "QInt8".
    """

    op_types: tuple[str, ...] = ("Conv",)
    exclude: tuple[str, ...] = ()
    per_channel: bool = True
    reduce_range: bool = True
    calibrate_method: str = "MinMax"
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"


# The head's 1x1 convolutions make the mask features, the initial kernels and the semantic
# logits at stride 8 (few FLOPs); their int8 rounding goes straight into mask logits and
# track embeddings.
HEAD = (
    "/model/kernel_head/",
    "/model/stages.",
    "/model/sem_fpn/conv_pred",
    "/model/sem_fpn/aux_conv",
)
RECIPES = {
    "conv": QuantRecipe(exclude=HEAD),  # the shipped recipe: backbone + necks
    "conv_all": QuantRecipe(),
    "conv_matmul": QuantRecipe(op_types=("Conv", "MatMul"), exclude=HEAD),
    "conv_per_tensor": QuantRecipe(per_channel=False, exclude=HEAD),
}


@dataclass(frozen=True)
class QuantizeInfo:
    path: Path
    recipe: QuantRecipe
    calibration_sequences: int
    calibration_frames: int
    quantized_nodes: int  # QuantizeLinear nodes inserted


def graph_input_size(onnx_path: Union[str, Path]) -> tuple[int, int]:
    """(H, W) of a fixed-size exported graph's ``image`` input; ValueError for a dynamic one."""
    _, spec = read_metadata(onnx_path)
    if spec.dynamic:
        raise ValueError(
            f"{onnx_path} has dynamic height/width; quantize a fixed-size export "
            "(export/to_onnx.py without --dynamic): calibration ranges depend on it"
        )
    return int(spec.height), int(spec.width)


class StateFeedbackReader:
    """Calibration feeds of clips with the state fed back (a ``CalibrationDataReader`` with the
    ``__len__`` / ``set_range`` that ``CalibStridedMinMax`` uses).

    fp32_path: the fp32 graph, run once per frame to get the next ``prev_kernels``. The feeds
    are made up front (an image and the kernels per frame: small); the calibrator's activations
    are reduced one frame at a time, so memory does not grow with the number of frames.
    """

    def __init__(
        self,
        fp32_path: Union[str, Path],
        sequences: Iterable[Iterable[np.ndarray]],
        max_frames: Optional[int] = None,
    ):
        import onnxruntime as ort

        self.height, self.width = graph_input_size(fp32_path)
        pre = PreprocessConfig(net_hw=(self.height, self.width))
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(fp32_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        shape = session.get_inputs()[1].shape  # prev_kernels [1, N, C]
        zeros = np.zeros((1, int(shape[1]), int(shape[2])), np.float32)
        self.feeds: list[dict[str, np.ndarray]] = []
        self.sequences = 0
        for clip in sequences:
            if max_frames is not None and len(self.feeds) >= max_frames:
                break
            self.sequences += 1
            state = {"prev_kernels": zeros, "has_prev": np.zeros((1,), np.float32)}
            for rgb in clip:
                if max_frames is not None and len(self.feeds) >= max_frames:
                    break
                image, _ = to_model_input(rgb, pre)
                feeds = {"image": image, **state}
                cur = session.run(["cur_kernels"], feeds)[0]
                state = {"prev_kernels": cur, "has_prev": np.ones((1,), np.float32)}
                self.feeds.append(feeds)
        self.frames = len(self.feeds)
        self.set_range(0, self.frames)

    def __len__(self) -> int:
        return self.frames

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.feeds[start_index:end_index])

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self._it, None)


def quantize_onnx(
    fp32_path: Union[str, Path],
    output: Union[str, Path],
    sequences: Iterable[Iterable[np.ndarray]],
    recipe: QuantRecipe = RECIPES["conv"],
    max_frames: Optional[int] = None,
) -> QuantizeInfo:
    """Calibrate on ``sequences`` and write the int8 QDQ graph to ``output`` (atomically).

    Raises ValueError when the graph is dynamic-size or no calibration frame was given, and
    RuntimeError when ONNX Runtime cannot load the result.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32_path, output = Path(fp32_path), Path(output)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"fp32 ONNX model not found: {fp32_path}")
    if fp32_path.resolve() == output.resolve():
        raise ValueError(f"output {output} would overwrite the fp32 input")
    base = StateFeedbackReader(fp32_path, sequences, max_frames)
    if base.frames == 0:
        raise ValueError("no calibration frames: the frame source was empty")

    class _Reader(CalibrationDataReader):  # the ABC wants a subclass
        def __len__(self) -> int:
            return len(base)

        def set_range(self, start_index: int, end_index: int) -> None:
            base.set_range(start_index, end_index)

        def get_next(self):
            return base.get_next()

    src = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in src.metadata_props}
    excluded = (
        [n.name for n in src.graph.node if n.name.startswith(recipe.exclude)]
        if recipe.exclude
        else []
    )
    with atomic_path(output) as tmp:
        quantize_static(
            str(fp32_path),
            str(tmp),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types),
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            activation_type=getattr(QuantType, recipe.activation_type),
            weight_type=getattr(QuantType, recipe.weight_type),
            calibrate_method=getattr(CalibrationMethod, recipe.calibrate_method),
            nodes_to_exclude=excluded,
            # MinMax: reduce each frame to its range at once (exact; memory of one frame)
            extra_options={"CalibStridedMinMax": 1}
            if recipe.calibrate_method == "MinMax"
            else None,
        )
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        meta[META_QUANT] = json.dumps(
            {
                "recipe": asdict(recipe),
                "calibration_frames": base.frames,
                "calibration_sequences": base.sequences,
                "fp32_model": fp32_path.name,
            }
        )
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = (
            src.doc_string + " | " if src.doc_string else ""
        ) + f"int8 QDQ ({', '.join(recipe.op_types)})"
        onnx.save(proto, str(tmp))
        try:
            ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeError(f"onnxruntime cannot load the quantized graph: {e}") from e
        n_q = sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    log.info(
        "wrote %s: %d QuantizeLinear nodes, calibrated on %d frames in %d clips",
        output,
        n_q,
        base.frames,
        base.sequences,
    )
    return QuantizeInfo(output, recipe, base.sequences, base.frames, n_q)


def read_quantization(onnx_path: Union[str, Path]) -> Optional[dict]:
    """The ``vknet_quantization`` metadata of an int8 graph; None for an fp32 one."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    return json.loads(meta[META_QUANT]) if META_QUANT in meta else None
