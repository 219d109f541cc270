"""The exported graph holds only ops TensorRT's ONNX parser takes, no data-dependent shapes,
and (at a fixed size) no positional-encoding or shape arithmetic left to compute."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vknet_export.onnx_ops import (
    DATA_DEPENDENT_OPS,
    TRT_SUPPORTED_OPS,
    check_graph,
    fold_constants,
    list_ops,
)


def test_exported_graph_is_tensorrt_clean(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    report = check_graph(model)
    ops = set(report.op_counts)
    print(report.describe())  # the full op listing, visible with pytest -s
    assert report.ok, report.describe()
    assert ops <= TRT_SUPPORTED_OPS, sorted(ops - TRT_SUPPORTED_OPS)
    assert not ops & (DATA_DEPENDENT_OPS | {"Einsum", "TopK"})
    assert "MatMul" in ops  # mask pooling and the dynamic conv


def test_fixed_size_graph_is_folded(tiny_onnx):
    """Positional encoding (Sin/Cos/Pow) and every Shape computation are constants."""
    ops = list_ops(onnx.load(str(tiny_onnx)))
    assert not {"Sin", "Cos", "Shape", "ConstantOfShape", "Range", "Identity"} & set(ops), ops


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime releases too
    return model


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_flags_data_dependent_and_unsupported_ops_with_node_names():
    k = numpy_helper.from_array(np.array([3], np.int64), "k")
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"], name="/model/bad/NonZero"),
        helper.make_node(
            "Einsum", ["x", "x"], ["e"], name="/model/pool/Einsum", equation="ij,ij->i"
        ),
        helper.make_node("TopK", ["x", "kk"], ["tv", "ti"], name="/model/top/TopK", axis=1),
        helper.make_node("TopK", ["x", "k"], ["sv", "si"], name="/model/ok/TopK", axis=1),
        helper.make_node("Foo", ["x"], ["f"], name="/model/custom/Foo", domain="my.domain"),
    ]
    m = _model(
        nodes,
        [_vi("x", [4, 5]), _vi("kk", [1], TensorProto.INT64)],
        [
            _vi("nz", None, TensorProto.INT64),
            _vi("e", [4]),
            _vi("tv", None),
            _vi("sv", None),
            _vi("f", None),
        ],
        [k],
    )
    report = check_graph(m)
    found = {(f.op, f.node) for f in report.findings}
    assert ("NonZero", "/model/bad/NonZero") in found
    assert ("Einsum", "/model/pool/Einsum") in found
    assert ("TopK", "/model/top/TopK") in found  # k from an input: dynamic
    assert ("TopK", "/model/ok/TopK") not in found  # constant k is fine
    assert ("my.domain::Foo", "/model/custom/Foo") in found
    assert "/model/bad/NonZero" in report.describe() and not report.ok


def test_flags_control_flow_inside_subgraphs():
    then = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["a"], name="inner")],
        "then",
        [],
        [_vi("a", None, TensorProto.INT64)],
    )
    other = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["b"], name="inner2")],
        "else",
        [],
        [_vi("b", None, TensorProto.INT64)],
    )
    node = helper.make_node(
        "If", ["c"], ["y"], name="/model/branch/If", then_branch=then, else_branch=other
    )
    m = _model(
        [node],
        [_vi("c", [], TensorProto.BOOL), _vi("x", [3])],
        [_vi("y", None, TensorProto.INT64)],
    )
    found = {(f.op, f.node) for f in check_graph(m).findings}
    assert {("If", "/model/branch/If"), ("NonZero", "inner")} <= found


def test_fold_constants_evaluates_shape_arithmetic_and_keeps_results():
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),  # static input shape -> constant
        helper.make_node("Sin", ["w"], ["sw"]),  # constant input -> folded
        helper.make_node("Reshape", ["x", "s"], ["xr"]),
        helper.make_node("Add", ["xr", "sw"], ["y"]),  # depends on x: kept
    ]
    m = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], [w])
    folded = fold_constants(m)
    assert [n.op_type for n in folded.graph.node] == ["Reshape", "Add"]
    onnx.checker.check_model(folded, full_check=True)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    for proto in (m, folded):
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = x + np.sin(numpy_helper.to_array(w))
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], expected, rtol=1e-6)


@pytest.mark.parametrize("op", sorted(DATA_DEPENDENT_OPS))
def test_data_dependent_set_is_disjoint_from_allowed_use(op):
    """Every data-dependent op is refused even though the parser knows most of them."""
    m = _model(
        [helper.make_node(op, ["x"], ["y"], name=f"/n/{op}")], [_vi("x", [3])], [_vi("y", None)]
    )
    assert not check_graph(m).ok
