"""to_trt cache key and rebuild logic without TensorRT (pure functions, a stand-in builder)."""
from __future__ import annotations

import json
import shutil

import onnx
import pytest

from vknet_export import to_trt
from vknet_export.to_trt import (
    BuildOptions, EngineCacheError, Platform, cache_key_path, ensure_engine, fp32_region,
    input_shapes, key_mismatches, make_cache_key, read_cache_key, sha256_file,
)

H100 = Platform("10.9.0", "NVIDIA H100 80GB HBM3", "9.0")


class FakeBuilder:
    """Writes a recognisable 'engine' and counts builds."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, engine, options):
        self.calls.append(options.precision)
        to_trt.write_atomic(engine, f"engine from {onnx_path.name} {options.precision}".encode())


@pytest.fixture()
def onnx_copy(tiny_onnx, tmp_path):
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, path)
    return path


def test_key_holds_everything_an_engine_depends_on(onnx_copy):
    shapes = input_shapes(onnx_copy, BuildOptions())
    assert shapes == {"image": [1, 128, 256, 3], "prev_kernels": [1, 37, 64], "has_prev": [1]}
    key = make_cache_key(sha256_file(onnx_copy), H100, "fp16", shapes)
    assert set(key) == set(to_trt.KEY_FIELDS)
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
    assert reasons == ["tensorrt_version: engine has '10.9.0', need '10.10.0'",
                       "gpu_name: engine has 'NVIDIA H100 80GB HBM3', need 'NVIDIA A100'"]


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
    ensure_engine(onnx_copy, engine, BuildOptions(fp16=True),
                  Platform("10.10.0", H100.gpu_name, "9.0"), builder=build)  # TensorRT upgrade
    ensure_engine(onnx_copy, engine, BuildOptions(fp16=True),
                  Platform("10.10.0", "NVIDIA L4", "8.9"), builder=build)  # other GPU
    assert build.calls == ["fp32", "fp16", "fp16", "fp16"]
    proto = onnx.load(str(onnx_copy))  # a changed ONNX file (e.g. re-exported)
    proto.doc_string += " re-exported"
    onnx.save(proto, onnx_copy)
    ensure_engine(onnx_copy, engine, BuildOptions(fp16=True),
                  Platform("10.10.0", "NVIDIA L4", "8.9"), builder=build)
    assert len(build.calls) == 5


def test_stale_engine_without_builder_fails_with_reasons(onnx_copy, tmp_path):
    engine = tmp_path / "m.engine"
    ensure_engine(onnx_copy, engine, BuildOptions(), H100, builder=FakeBuilder())
    with pytest.raises(EngineCacheError, match=r"stale.*tensorrt_version: engine has '10.9.0', "
                                               r"need '11.0.0'"):
        ensure_engine(onnx_copy, engine, BuildOptions(), Platform("11.0.0", H100.gpu_name, "9.0"),
                      can_build=False)
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
    assert shapes["image"] == {"min": [1, 32, 32, 3], "opt": [1, 64, 96, 3],
                               "max": [1, 256, 512, 3]}


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


def test_cli_without_tensorrt_says_how_to_install(onnx_copy, tmp_path, caplog):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT installed: see test_trt_gpu.py")
    except ImportError:
        pass
    rc = to_trt.main(["--onnx", str(onnx_copy), "--output", str(tmp_path / "m.engine"),
                      "--build-only"])
    assert rc == 1
    assert "pip install tensorrt" in caplog.text
    assert not (tmp_path / "m.engine").exists()
