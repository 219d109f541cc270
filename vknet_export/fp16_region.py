"""Which ONNX nodes must stay FP32 in an FP16 TensorRT engine (video_knet.md §10.1 item 12).

The hard-mask pooling produces un-normalised sums over up to h*w pixels that can exceed the fp16
range. Every layer from such a sum up to and including the next normalisation stays in FP32.
Pure onnx graph walking (no TensorRT).
"""

from __future__ import annotations

_NORMS = frozenset({"LayerNormalization", "InstanceNormalization", "GroupNormalization"})
_PASS_THROUGH = frozenset({"Reshape", "Transpose", "Flatten", "Unsqueeze", "Squeeze"})


def fp32_region(model) -> set[str]:
    """ONNX node names that must stay FP32: each MatMul fed by a hard mask (Greater -> Cast
    [-> Reshape ...]) -- an un-normalised sum -- and everything downstream of it up to and
    including the next normalisation node."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def from_hard_mask(tensor: str) -> bool:
        n = producer.get(tensor)
        while n is not None and n.op_type in _PASS_THROUGH:
            n = producer.get(n.input[0])
        return (
            n is not None
            and n.op_type == "Cast"
            and producer.get(n.input[0]) is not None
            and producer[n.input[0]].op_type == "Greater"
        )

    seeds = [
        n
        for n in model.graph.node
        if n.op_type == "MatMul" and any(from_hard_mask(i) for i in n.input)
    ]
    region: set[str] = set()
    stack = list(seeds)
    while stack:
        n = stack.pop()
        if n.name in region:
            continue
        region.add(n.name)
        if n.op_type in _NORMS:
            continue
        for o in n.output:
            stack.extend(consumers.get(o, []))
    return region
