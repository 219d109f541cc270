"""build_engine's control flow against a stand-in ``tensorrt`` module (the real one needs a GPU):
parser errors surface in full, fp16 pins the un-normalised-sum layers to fp32, dynamic graphs get
an optimisation profile, engine + timing cache + cache key are written, nothing on failure."""

from __future__ import annotations

import sys
import types

import onnx
import pytest

from vknet_export.engine_cache import BuildOptions, Platform, ensure_engine, read_cache_key
from vknet_export.fp16_region import fp32_region
from vknet_export.trt_build import TrtBuildError, build_engine


class _Layer:
    def __init__(self, name):
        self.name, self.precision, self.num_outputs, self.out_types = name, None, 1, {}

    def set_output_type(self, j, dt):
        self.out_types[j] = dt


class _Tensor:
    def __init__(self, v):
        self.name = v.name
        self.shape = [d.dim_value or -1 for d in v.type.tensor_type.shape.dim]
        self.dtype = v.type.tensor_type.elem_type


class _Network:
    def __init__(self):
        self.layers, self.inputs, self.outputs = [], [], []

    num_layers = property(lambda s: len(s.layers))
    num_inputs = property(lambda s: len(s.inputs))
    num_outputs = property(lambda s: len(s.outputs))

    def get_layer(self, i):
        return self.layers[i]

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]


def fake_tensorrt(parse_errors=(), version="10.9.0"):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.built = {}

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (mn, opt, mx)

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pool = set(), [], {}

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def create_timing_cache(self, data):
            return bytearray(data or b"TC")

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: bytes(self.cache) + b"+")

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, p):
            self.profiles.append(p)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return _Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.built.update(network=network, config=config)
            return b"SERIALIZED ENGINE"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, list(parse_errors)

        def parse(self, data, path):
            model = onnx.load_from_string(data)
            self.network.layers = [_Layer(n.name) for n in model.graph.node]
            self.network.inputs = [_Tensor(v) for v in model.graph.input]
            self.network.outputs = [_Tensor(v) for v in model.graph.output]
            return not self.errors

        num_errors = property(lambda s: len(s.errors))

        def get_error(self, i):
            return self.errors[i]

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF")
    return trt


PLATFORM = Platform("10.9.0", "Stand-in GPU", "9.0")


def test_fp16_build_pins_mask_sums_and_writes_everything(tiny_onnx, tmp_path, monkeypatch):
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    engine = tmp_path / "m.engine"
    ensure_engine(
        tiny_onnx, engine, BuildOptions(fp16=True, workspace_gb=2), PLATFORM, builder=build_engine
    )
    assert engine.read_bytes() == b"SERIALIZED ENGINE"
    assert (tmp_path / "m.engine.timing").read_bytes() == b"TC+"
    assert read_cache_key(engine)["precision"] == "fp16"
    config, network = trt.built["config"], trt.built["network"]
    assert {"FP16", "OBEY"} <= config.flags and config.pool["WORKSPACE"] == 2 * 2**30
    assert not config.profiles  # static graph
    pinned = {layer.name for layer in network.layers if layer.precision == "FLOAT"}
    assert pinned == fp32_region(onnx.load(str(tiny_onnx)))
    assert all(layer.out_types == {0: "FLOAT"} for layer in network.layers if layer.name in pinned)


def test_fp32_build_pins_nothing(tiny_onnx, tmp_path, monkeypatch):
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    ensure_engine(tiny_onnx, tmp_path / "m.engine", BuildOptions(), PLATFORM, builder=build_engine)
    assert not trt.built["config"].flags
    assert all(layer.precision is None for layer in trt.built["network"].layers)


def test_dynamic_graph_gets_profile(tiny_onnx_dynamic, tmp_path, monkeypatch):
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    opts = BuildOptions(min_hw=(64, 64), max_hw=(512, 1024))
    ensure_engine(tiny_onnx_dynamic, tmp_path / "d.engine", opts, PLATFORM, builder=build_engine)
    (profile,) = trt.built["config"].profiles
    assert profile.shapes == {"image": ([1, 64, 64, 3], [1, 64, 96, 3], [1, 512, 1024, 3])}


def test_parser_errors_are_raised_in_full_and_nothing_is_written(
    tiny_onnx, tmp_path, monkeypatch, caplog
):
    errors = [
        "In node 12 (/model/x/Foo): UNSUPPORTED_NODE: No importer for Foo",
        "In node 40 (/model/y/Bar): INVALID_NODE: bad attribute",
    ]
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(parse_errors=errors))
    engine = tmp_path / "m.engine"
    with pytest.raises(TrtBuildError) as info:
        ensure_engine(tiny_onnx, engine, BuildOptions(), PLATFORM, builder=build_engine)
    assert all(e in str(info.value) for e in errors)
    assert all(e in caplog.text for e in errors)
    assert list(tmp_path.iterdir()) == []


def test_strongly_typed_tensorrt_needs_converter_for_fp16(tiny_onnx, tmp_path, monkeypatch):
    trt = fake_tensorrt(version="11.4.0")
    trt.BuilderFlag = types.SimpleNamespace()  # TensorRT 11: no FP16 builder flag
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)  # not installed
    with pytest.raises(TrtBuildError, match="pip install onnxconverter-common"):
        ensure_engine(
            tiny_onnx,
            tmp_path / "m.engine",
            BuildOptions(fp16=True),
            PLATFORM,
            builder=build_engine,
        )
