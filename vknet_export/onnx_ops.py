"""What is inside an exported graph: op listing, TensorRT-parser support, data-dependent shapes,
and folding of the subgraphs that are constant at a fixed network size.

The TorchScript exporter names each node after the module that produced it
(``/model/stages.0/kernel_update_conv/Sigmoid``), so every finding carries the node name.

    report = check_graph(onnx.load("m.onnx"))
    if not report.ok: raise RuntimeError(report.describe())
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# ONNX ops the TensorRT 10 ONNX parser imports (onnx-tensorrt docs/operators.md, TensorRT 10.x),
# minus the ones it lists as unsupported. ``If``/``Loop``/``Scan``/``NonZero``/``Einsum`` parse
# but are refused below as data-dependent or partially supported.
TRT_SUPPORTED_OPS: frozenset[str] = frozenset(
    """
Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv
ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu
Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization
GRU HammingWindow HannWindow Hardmax HardSigmoid HardSwish Identity If ImageScaler
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
Loop LpNormalization LpPool LRN LSTM MatMul Max MaxPool MaxRoiPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split()
)

# Ops whose output shape depends on tensor values, or that hide control flow / partial support.
DATA_DEPENDENT_OPS: frozenset[str] = frozenset(
    {"NonZero", "Loop", "If", "Scan", "Unique", "Compress", "NonMaxSuppression"}
)
PARTIAL_SUPPORT_OPS: frozenset[str] = frozenset({"Einsum"})  # video_knet.md §10.1 item 6
_RANDOM_OPS = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Bernoulli",
        "Multinomial",
    }
)
_FOLD_MAX_ELEMENTS = 1 << 22  # never materialise a folded constant bigger than this


@dataclass(frozen=True)
class Finding:
    """One offending node: ``op`` in node ``node`` (its name says which module made it)."""

    op: str
    node: str
    reason: str


@dataclass
class GraphReport:
    """Op histogram of a graph (subgraphs included) and everything TensorRT would refuse."""

    op_counts: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def describe(self) -> str:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items()))
        lines = [f"{sum(self.op_counts.values())} nodes: {ops}"]
        lines += [f"  {f.op} at node {f.node!r}: {f.reason}" for f in self.findings]
        return "\n".join(lines)


def iter_nodes(graph) -> Iterator:
    """Every node of ``graph``, descending into If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from iter_nodes(attr.g)
            for g in attr.graphs:
                yield from iter_nodes(g)


def list_ops(model) -> Counter:
    """op_type -> count over the whole model (``domain::op`` for non-default domains)."""
    return Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        for n in iter_nodes(model.graph)
    )


def check_graph(model) -> GraphReport:
    """List every op and flag those TensorRT cannot take or that make shapes data-dependent.

    Flags: ops outside ``TRT_SUPPORTED_OPS`` or in a custom domain, ``DATA_DEPENDENT_OPS``,
    ``Einsum`` (partial TensorRT support), ``TopK`` whose k is not a constant, and graph
    outputs of a fixed-size graph whose shape inference does not give static dims.
    """
    import onnx

    report = GraphReport(op_counts=list_ops(model))
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for n in iter_nodes(model.graph):
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        if op in DATA_DEPENDENT_OPS:
            report.findings.append(Finding(op, n.name, "data-dependent shape or control flow"))
        elif op in PARTIAL_SUPPORT_OPS:
            report.findings.append(Finding(op, n.name, "partial TensorRT support; use MatMul"))
        elif op not in TRT_SUPPORTED_OPS:
            report.findings.append(Finding(op, n.name, "not supported by TensorRT's ONNX parser"))
        elif op == "TopK" and (len(n.input) < 2 or n.input[1] not in constants):
            report.findings.append(Finding(op, n.name, "k is not a constant (dynamic TopK)"))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # onnx raises ValueError/InferenceError from C++
        report.findings.append(Finding("graph", model.graph.name, f"shape inference failed: {e}"))
        return report
    inputs_static = all(_static_dims(v) is not None for v in inferred.graph.input)
    if inputs_static:
        for v in inferred.graph.output:
            if _static_dims(v) is None:
                report.findings.append(
                    Finding("output", v.name, "shape is not static although every input shape is")
                )
    return report


def _static_dims(value_info) -> tuple[int, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return None if any(d < 0 for d in dims) else dims


def fold_constants(model, max_passes: int = 64):
    """Repeat ``fold_once`` until nothing more folds (shape inference sees more each pass)."""
    for _ in range(max_passes):
        before = len(model.graph.node)
        model = fold_once(model)
        if len(model.graph.node) == before:
            break
    return model


def fold_once(model):
    """Replace every node whose inputs are all constant (or a ``Shape`` of a statically shaped
    tensor) by an initializer. At a fixed network size this turns the positional encoding and
    all shape arithmetic into constants. Returns a new ModelProto.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    try:
        g = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception as e:  # fold what is constant anyway, without shapes
        log.warning("shape inference failed, folding without shapes: %s", e)
        g = model.graph
    shapes = {v.name: _static_dims(v) for v in list(g.value_info) + list(g.input) + list(g.output)}
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    out_names = {o.name for o in g.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)

    def evaluate(node, feeds):
        return ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)

    kept, folded = [], 0
    for node in model.graph.node:
        value = _try_fold(node, consts, shapes, out_names, evaluate)
        if value is None:
            kept.append(node)
            continue
        for name, arr in zip(node.output, value):
            consts[name] = np.asarray(arr)
        folded += 1
    used = {i for n in kept for i in _all_inputs(n)} | out_names
    new_graph = onnx.helper.make_graph(
        kept,
        model.graph.name,
        list(model.graph.input),
        list(model.graph.output),
        initializer=[numpy_helper.from_array(consts[k], k) for k in consts if k in used],
    )
    new = onnx.helper.make_model(
        new_graph,
        opset_imports=list(model.opset_import),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
    )
    new.ir_version = model.ir_version
    new.metadata_props.extend(model.metadata_props)
    log.info("folded %d constant nodes, %d remain", folded, len(kept))
    return new


def _all_inputs(node) -> Iterator[str]:
    yield from (i for i in node.input if i)
    for attr in node.attribute:  # names captured by subgraphs
        for g in ([attr.g] if attr.g.node else []) + list(attr.graphs):
            for n in g.node:
                yield from _all_inputs(n)


def _try_fold(node, consts, shapes, out_names, evaluate):
    if node.op_type in _RANDOM_OPS or node.domain not in ("", "ai.onnx"):
        return None
    if any(o in out_names for o in node.output):
        return None
    if any(a.g.node or a.graphs for a in node.attribute):
        return None
    if node.op_type == "Shape":
        dims = shapes.get(node.input[0])
        if dims is None:
            return None
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(dims))
        return [np.array(dims[slice(start, end)], dtype=np.int64)]
    inputs = [i for i in node.input if i]
    if not all(i in consts for i in inputs):
        return None
    try:
        outs = evaluate(node, {i: consts[i] for i in inputs})
    except Exception as e:  # an op the reference evaluator lacks: leave it in the graph
        log.debug("not folding %s (%s): %s", node.name, node.op_type, e)
        return None
    if any(np.asarray(o).size > _FOLD_MAX_ELEMENTS for o in outs):
        return None
    return outs
