"""to_trt cache key and rebuild logic without TensorRT (pure functions, a stand-in builder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from vknet_core.atomic import write_bytes_atomic
from vknet_export import engine_cache, to_trt
from vknet_export.engine_cache import (
    BuildOptions,
    EngineCacheError,
    Platform,
    cache_key_path,
    ensure_engine,
    input_shapes,
    key_mismatches,
    make_cache_key,
    read_cache_key,
    sha256_file,
)
from vknet_export.fp16_region import fp32_region

REPO = Path(__file__).resolve().parents[2]
H100 = Platform("10.9.0", "NVIDIA H100 80GB HBM3", "9.0")


class FakeBuilder:
    """Writes a recognisable 'engine' and counts builds."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, engine, options):
        self.calls.append(options.precision)
        write_bytes_atomic(engine, f"engine from {onnx_path.name} {options.precision}".encode())


@pytest.fixture()
def onnx_copy(tiny_onnx, tmp_path):
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, path)
    return path


def test_key_holds_everything_an_engine_depends_on(onnx_copy):
    shapes = input_shapes(onnx_copy, BuildOptions())
    assert shapes == {"image": [1, 128, 256, 3], "prev_kernels": [1, 37, 64], "has_prev": [1]}
    key = make_cache_key(sha256_file(onnx_copy), H100, "fp16", shapes)
    assert set(key) == set(engine_cache.KEY_FIELDS)
    assert key["gpu_name"] == "NVIDIA H100 80GB HBM3" and key["compute_capability"] == "9.0"
    assert key["tensorrt_version"] == "10.9.0" and key["precision"] == "fp16"
    assert len(key["onnx_sha256"]) == 64
    with pytest.raises(ValueError, match="precision must be"):
        make_cache_key("x", H100, "int4", shapes)


def test_mismatches_name_each_field():
    base = make_cache_key("abc", H100, "fp32", {"image": [1, 64, 96, 3]})
    assert key_mismatches(base, dict(base)) == []
    assert key_mismatches(None, base) == ["no cache key next to the engine"]
    other = dict(base, tensorrt_version="10.10.0", gpu_name="NVIDIA A100")
    reasons = key_mismatches(base, other)
    assert reasons == [
        "tensorrt_version: engine has '10.9.0', need '10.10.0'",
        "gpu_name: engine has 'NVIDIA H100 80GB HBM3', need 'NVIDIA A100'",
    ]


def test_build_reuse_and_rebuild_on_every_kind_of_change(onnx_copy, tmp_path):
    engine = tmp_path / "m.engine"
    build = FakeBuilder()
    ensure_engine(onnx_copy, engine, BuildOptions(), H100, builder=build)
    assert build.calls == ["fp32"] and engine.is_file()
    key = read_cache_key(engine)
    assert key["onnx_sha256"] == sha256_file(onnx_copy)
    assert key["model_config"]["name"] == "tiny"  # the engine alone can rebuild cfg
    assert cache_key_path(engine).name == "m.engine.json"

    ensure_engine(onnx_copy, engine, BuildOptions(), H100, builder=build)  # fresh: reused
    assert build.calls == ["fp32"]
    ensure_engine(onnx_copy, engine, BuildOptions(fp16=True), H100, builder=build)  # precision
    ensure_engine(
        onnx_copy,
        engine,
        BuildOptions(fp16=True),
        Platform("10.10.0", H100.gpu_name, "9.0"),
        builder=build,
    )  # TensorRT upgrade
    ensure_engine(
        onnx_copy,
        engine,
        BuildOptions(fp16=True),
        Platform("10.10.0", "NVIDIA L4", "8.9"),
        builder=build,
    )  # other GPU
    assert build.calls == ["fp32", "fp16", "fp16", "fp16"]
    proto = onnx.load(str(onnx_copy))  # a changed ONNX file (e.g. re-exported)
    proto.doc_string += " re-exported"
    onnx.save(proto, onnx_copy)
    ensure_engine(
        onnx_copy,
        engine,
        BuildOptions(fp16=True),
        Platform("10.10.0", "NVIDIA L4", "8.9"),
        builder=build,
    )
    assert len(build.calls) == 5


def test_stale_engine_without_builder_fails_with_reasons(onnx_copy, tmp_path):
    engine = tmp_path / "m.engine"
    ensure_engine(onnx_copy, engine, BuildOptions(), H100, builder=FakeBuilder())
    with pytest.raises(
        EngineCacheError,
        match=r"stale.*tensorrt_version: engine has '10.9.0', "
        r"need '11.0.0'",
    ):
        ensure_engine(
            onnx_copy,
            engine,
            BuildOptions(),
            Platform("11.0.0", H100.gpu_name, "9.0"),
            can_build=False,
        )
    with pytest.raises(EngineCacheError, match="gpu_name"):  # engine only, no ONNX to rebuild
        ensure_engine(None, engine, BuildOptions(), Platform("10.9.0", "NVIDIA L4", "8.9"))
    assert ensure_engine(None, engine, BuildOptions(), H100) == engine  # same platform: fine


def test_missing_or_corrupt_key_counts_as_stale(onnx_copy, tmp_path):
    engine = tmp_path / "m.engine"
    build = FakeBuilder()
    engine.write_bytes(b"old engine without key")
    ensure_engine(onnx_copy, engine, BuildOptions(), H100, builder=build)
    assert len(build.calls) == 1
    cache_key_path(engine).write_text("{not json")
    assert read_cache_key(engine) is None
    ensure_engine(onnx_copy, engine, BuildOptions(), H100, builder=build)
    assert len(build.calls) == 2 and json.loads(cache_key_path(engine).read_text())
    with pytest.raises(EngineCacheError, match="missing and no ONNX"):
        ensure_engine(None, tmp_path / "other.engine", BuildOptions(), H100)


def test_dynamic_graph_key_has_profile(tiny_onnx_dynamic):
    shapes = input_shapes(tiny_onnx_dynamic, BuildOptions(min_hw=(32, 32), max_hw=(256, 512)))
    assert shapes["image"] == {
        "min": [1, 32, 32, 3],
        "opt": [1, 64, 96, 3],
        "max": [1, 256, 512, 3],
    }


def test_fp32_region_covers_unnormalised_sums(tiny_onnx):
    """Every hard-mask sum (kernel head + 3 stages) and the layers up to the next norm."""
    model = onnx.load(str(tiny_onnx))
    region = fp32_region(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    pools = {"/model/kernel_head/MatMul"} | {f"/model/stages.{s}/MatMul" for s in range(3)}
    assert pools <= region
    dynamic = {f"/model/stages.{s}/kernel_update_conv/dynamic_layer/MatMul" for s in range(3)}
    assert dynamic <= region
    assert any(ops[n] == "LayerNormalization" for n in region)  # stops at (and keeps) a norm
    assert not any(n.startswith("/model/backbone") for n in region)
    assert not any("attention" in n for n in region)  # normalised kernels run in fp16
    assert len(region) < len(ops) // 3


def _no_tensorrt() -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return
    pytest.skip("TensorRT installed: see test_trt_gpu.py")


@pytest.mark.parametrize("stand_in", [False, True], ids=["no-tensorrt", "tensorrt-without-gpu"])
def test_script_catches_cache_errors_in_one_line(onnx_copy, tmp_path, stand_in):
    """``python export/to_trt.py`` as a user runs it: the engine-cache error raised below the CLI
    (TensorRT missing, or present without a CUDA GPU) is caught -- the launcher loads
    ``vknet_export`` once, so ``EngineCacheError`` is one class -- and printed as one line."""
    _no_tensorrt()
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the platform probe would succeed")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site")] * stand_in + [str(REPO)])
    )
    if stand_in:  # a stand-in ``tensorrt`` module (the real one needs a GPU)
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "tensorrt.py").write_text('__version__ = "10.9.0"\n')
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "export/to_trt.py",
            "--onnx",
            str(onnx_copy),
            "--output",
            str(out / "m.engine"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    expected = "CUDA GPU" if stand_in else "pip install tensorrt"
    assert lines[0].startswith("to_trt.py: error: ") and expected in lines[0]
    assert not out.exists()


def test_cli_validates_before_touching_tensorrt(onnx_copy, tmp_path, capsys):
    rc = to_trt.main(
        ["--onnx", str(tmp_path / "missing.onnx"), "--output", str(tmp_path / "m.engine")]
    )
    assert rc == 2 and "ONNX model not found" in capsys.readouterr().err
    rc = to_trt.main(
        [
            "--onnx",
            str(onnx_copy),
            "--output",
            str(tmp_path / "m.engine"),
            "--min-hw",
            "512",
            "512",
            "--max-hw",
            "256",
            "256",
        ]
    )
    assert rc == 2 and "must be positive and <= --max-hw" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
