"""TensorRT engine build + parity; runs only where tensorrt and a CUDA GPU exist."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU (TensorRT tests)", allow_module_level=True)
pytest.importorskip("tensorrt", reason="needs TensorRT (GPU extra: pip install tensorrt)")

from tests.export.conftest import HEIGHT, WIDTH  # noqa: E402
from vknet_core.runtime import TorchBackend  # noqa: E402
from vknet_export.compare import compare_backends, synthetic_clip  # noqa: E402
from vknet_export.engine_cache import cache_key_path, read_cache_key  # noqa: E402
from vknet_export.trt_backend import TrtBackend  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("fp16", [False, True])
def test_engine_matches_pytorch_on_eight_frames(tiny_model, tiny_onnx, tmp_path, fp16):
    engine = tmp_path / ("fp16.engine" if fp16 else "fp32.engine")
    frames = synthetic_clip(HEIGHT, WIDTH, 8)
    with (
        TorchBackend(tiny_model, "cuda") as ref,
        TrtBackend(engine, "cuda:0", onnx_path=tiny_onnx, fp16=fp16) as trt_be,
    ):
        res = compare_backends(ref, trt_be, tiny_model.cfg, frames)
    print(res.table())
    key = read_cache_key(engine)
    assert key["precision"] == ("fp16" if fp16 else "fp32") and cache_key_path(engine).is_file()
    if fp16:
        assert res.max_abs["cls_prob"] <= 2e-2
    else:
        assert res.max_abs["cls_prob"] <= 1e-4
        assert res.max_rel["mask_logits"] <= 1e-3 and res.max_rel["track_embed"] <= 1e-3
        assert res.panoptic_equal and res.track_ids_equal


def test_engine_is_reused_then_rebuilt_when_key_changes(tiny_onnx, tmp_path):
    engine = tmp_path / "m.engine"
    TrtBackend(engine, onnx_path=tiny_onnx).close()
    mtime = engine.stat().st_mtime_ns
    TrtBackend(engine, onnx_path=tiny_onnx).close()
    assert engine.stat().st_mtime_ns == mtime  # cache key matched: no rebuild
    key = read_cache_key(engine)
    cache_key_path(engine).write_text(__import__("json").dumps(dict(key, tensorrt_version="0.0")))
    TrtBackend(engine, onnx_path=tiny_onnx).close()
    assert engine.stat().st_mtime_ns != mtime
