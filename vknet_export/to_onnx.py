"""Export the per-frame Video K-Net graph to ONNX with explicit kernel state (DESIGN §3.2).

    python export/to_onnx.py --preset tiny --height 128 --width 256 --output tiny.onnx
    python export/to_onnx.py --checkpoint m.pt --height 384 --width 1248 --output m.onnx \
        [--dynamic]

What is exported is ``FrameStep(model)``: uint8 RGB [1,H,W,3] in, normalisation inside the graph,
``prev_kernels``/``has_prev`` in, the five ``FrameOutputs`` out (``vknet_core.io_spec``). At a
fixed size every shape computation and the positional encoding are folded into constants
(``onnx_ops.fold_constants``). The file is written to a temp name and renamed only after
``onnx.checker``, the TensorRT op check and an ONNX Runtime smoke run against PyTorch pass.
The model's config and network size travel in the ONNX metadata (``read_metadata``).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from vknet_core.atomic import atomic_path
from vknet_core.cli import ArgumentParser, run_cli
from vknet_core.config import PRESETS, VKNetConfig
from vknet_core.io_spec import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    IOSpec,
    dummy_inputs,
    from_metadata,
    graph_metadata,
    io_spec,
)
from vknet_core.model.vknet import FrameStep, VideoKNet

log = logging.getLogger(__name__)

SMOKE_TOL = {"cls_prob": 1e-3}  # abs; the acceptance tolerances are checked by the tests


@dataclass(frozen=True)
class ExportResult:
    path: Path
    spec: IOSpec
    op_counts: dict[str, int]
    max_abs_diff: dict[str, float]  # ORT vs PyTorch on the smoke-run inputs


def load_model(
    checkpoint: Optional[Union[str, Path]] = None, preset: Optional[str] = None, seed: int = 0
) -> VideoKNet:
    """A checkpoint (``vknet_core.load_checkpoint``) or a preset with seeded random weights."""
    import vknet_core

    if (checkpoint is None) == (preset is None):
        raise ValueError(
            f"give exactly one of checkpoint or preset, got checkpoint={checkpoint!r}"
            f" preset={preset!r}"
        )
    if checkpoint is not None:
        return vknet_core.load_checkpoint(checkpoint)
    torch.manual_seed(seed)
    log.warning("exporting preset %r with random weights (no checkpoint given)", preset)
    return vknet_core.build_model(preset).eval()


def export_model(
    model: VideoKNet,
    output: Union[str, Path],
    height: int,
    width: int,
    opset: int = 17,
    dynamic: bool = False,
    check_trt_ops: bool = True,
) -> ExportResult:
    """Export ``FrameStep(model)`` at ``height`` x ``width`` to ``output`` (atomically).

    Raises RuntimeError (nothing written) when the checker, the TensorRT op check or the ONNX
    Runtime smoke run fails.
    """
    import onnx

    from vknet_export.onnx_ops import check_graph, fold_constants

    output = Path(output)
    cfg: VKNetConfig = model.cfg
    spec = io_spec(cfg, height, width, dynamic=dynamic)
    step = FrameStep(model.cpu().eval()).eval()
    sample = dummy_inputs(spec, seed=0)
    args = tuple(torch.from_numpy(sample[n]) for n in INPUT_NAMES)
    with atomic_path(output) as tmp:  # renamed onto output only when every check passed
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape ints: shapes are fixed
            torch.onnx.export(
                step,
                args,
                str(tmp),
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamic_axes=spec.dynamic_axes(),
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        proto = fold_constants(proto)  # fixed size: everything but the network; dynamic: less
        for key, value in graph_metadata(cfg, spec).items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = f"vknet per-frame graph, preset {cfg.name}, {height}x{width}"
        onnx.checker.check_model(proto, full_check=True)
        report = check_graph(proto)
        log.info("graph ops: %s", report.describe())
        if check_trt_ops and not report.ok:
            raise RuntimeError(
                f"exported graph has ops TensorRT cannot take:\n{report.describe()}"
            )
        onnx.save(proto, str(tmp))
        diffs = smoke_run(tmp, step, spec)
    log.info("wrote %s (%.1f MB)", output, output.stat().st_size / 1e6)
    return ExportResult(output, spec, dict(report.op_counts), diffs)


def smoke_run(onnx_path: Union[str, Path], step: FrameStep, spec: IOSpec) -> dict[str, float]:
    """Run two frames (first frame, then the state fed back) through ORT and PyTorch.

    Raises RuntimeError on a missing/misshaped/non-finite output or a cls_prob difference above
    ``SMOKE_TOL``. Returns the max abs difference per output (second frame).
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_in = [i.name for i in sess.get_inputs()]
    got_out = [o.name for o in sess.get_outputs()]
    if got_in != list(INPUT_NAMES) or got_out != list(OUTPUT_NAMES):
        raise RuntimeError(
            f"graph I/O is {got_in} -> {got_out}, expected "
            f"{list(INPUT_NAMES)} -> {list(OUTPUT_NAMES)}"
        )
    feeds = dummy_inputs(spec, seed=1)  # not the tracing sample
    diffs: dict[str, float] = {}
    for frame in range(2):
        onnx_out = dict(zip(OUTPUT_NAMES, sess.run(None, feeds)))
        with torch.no_grad():
            ref = step(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
        for name, r in zip(OUTPUT_NAMES, ref):
            o = onnx_out[name]
            if tuple(o.shape) != tuple(r.shape) or not np.isfinite(o).all():
                raise RuntimeError(
                    f"ORT output {name!r}: shape {list(o.shape)} (expected "
                    f"{list(r.shape)}), finite={bool(np.isfinite(o).all())}"
                )
            diffs[name] = float(np.abs(o - r.numpy()).max())
        feeds = dict(feeds, prev_kernels=onnx_out["cur_kernels"], has_prev=np.ones(1, np.float32))
        log.info("smoke run frame %d: max abs diff %s", frame, diffs)
        for name, tol in SMOKE_TOL.items():
            if diffs[name] > tol:
                raise RuntimeError(
                    f"ORT and PyTorch disagree on {name!r} at frame {frame}: "
                    f"max abs diff {diffs[name]:.3g} > {tol}"
                )
    return diffs


def read_metadata(onnx_path: Union[str, Path]) -> tuple[VKNetConfig, IOSpec]:
    """The model config and I/O spec stored in a file written by ``export_model``."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError of a truncated or foreign file
        raise ValueError(
            f"{path} is not a readable ONNX model ({type(e).__name__}); expected a graph "
            "written by export/to_onnx.py"
        ) from e
    return from_metadata({p.key: p.value for p in proto.metadata_props}, str(path))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = ArgumentParser(prog="to_onnx.py", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="vknet checkpoint (.pt)")
    src.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="preset name with random weights (tests, benchmarks)",
    )
    p.add_argument("--height", type=int, required=True, help="network input height (x32)")
    p.add_argument("--width", type=int, required=True, help="network input width (x32)")
    p.add_argument("--output", type=Path, required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=17, choices=(17, 18), help="ONNX opset")
    p.add_argument("--dynamic", action="store_true", help="dynamic height/width axes")
    p.add_argument("--seed", type=int, default=0, help="weight seed for --preset")
    return p.parse_args(argv)


def export_cli(args: argparse.Namespace) -> ExportResult:
    """What ``main`` runs: arguments checked before the model is built or a file written."""
    if args.height <= 0 or args.width <= 0 or args.height % 32 or args.width % 32:
        raise ValueError(
            f"--height and --width must be positive multiples of 32, got "
            f"{args.height}x{args.width} (e.g. 384x1248)"
        )
    if args.output.is_dir():
        raise IsADirectoryError(f"--output {args.output} is a folder; expected a .onnx path")
    model = load_model(args.checkpoint, args.preset, args.seed)
    return export_model(model, args.output, args.height, args.width, args.opset, args.dynamic)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def body() -> int:
        res = export_cli(args)
        print(
            f"wrote {res.path}: {sum(res.op_counts.values())} nodes, "
            f"inputs {[(t.name, list(t.shape), t.dtype) for t in res.spec.inputs]}"
        )
        print(
            "ORT vs PyTorch max abs diff: "
            + ", ".join(f"{k} {v:.2e}" for k, v in res.max_abs_diff.items())
        )
        return 0

    return run_cli("to_onnx.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
