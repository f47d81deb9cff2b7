"""onnxruntime backend agrees with eager fp32 and drops into the PerceptionPipeline.

Tolerance: depth aligned relative error <= 1e-4 and labels >= 99.9 % (fp32 graph)."""

import numpy as np
import pytest
import torch

from dpt_perception.inference.backends import make_engine
from dpt_perception.inference.backends.agreement import FP32_TOLERANCE, compare_outputs
from dpt_perception.inference.backends.onnxruntime_engine import OnnxRuntimeEngine
from dpt_perception.inference.export import export_onnx
from dpt_perception.inference.pipeline import PerceptionPipeline
from dpt_perception.model.testing import tiny_model

FP32_DEPTH, FP32_LABELS = FP32_TOLERANCE


@pytest.fixture(scope="module")
def model():
    return tiny_model("vit_base", seed=1)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("ort") / "tiny.onnx", 64, 96, batch_size=2)


def test_onnxruntime_agrees_with_eager(model, onnx_path):
    engine = OnnxRuntimeEngine(onnx_path)  # config comes from the file's metadata
    assert engine.config == model.config
    assert engine.providers[0] == "CPUExecutionProvider"
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.inference_mode():
        ref = model(x)
    assert float(ref["depth"].std()) > 0  # a non-trivial depth map, so the comparison means something
    out = engine(x)
    assert out["depth"].shape == (2, 64, 96) and out["segmentation"].shape == (2, 5, 64, 96)
    agreement = compare_outputs(out, ref)
    assert agreement.within(FP32_DEPTH, FP32_LABELS), agreement.summary()


def test_fixed_size_file_rejects_other_sizes_clearly(onnx_path):
    engine = make_engine(None, "onnxruntime", onnx_path=onnx_path)
    with pytest.raises(ValueError, match="fixed input shape"):
        engine(torch.zeros(2, 3, 96, 96))


def test_low_precision_needs_tensorrt_provider(onnx_path):
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        OnnxRuntimeEngine(onnx_path, precision="fp16")
    with pytest.raises(ValueError, match="TensorRT execution provider"):
        OnnxRuntimeEngine(onnx_path, precision="bf16")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m dpt_perception.inference.export"):
        OnnxRuntimeEngine(tmp_path / "nope.onnx")


def test_engine_drops_into_the_predictor(model, onnx_path):
    """Two 150x100 frames resize to the exported 64x96 network input ("fixed" rule)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (150, 100, 3), dtype=np.uint8) for _ in range(2)]
    frames = [np.ascontiguousarray(f.transpose(1, 0, 2)) for f in frames]  # 100x150
    kwargs = dict(device="cpu", net_size=(64, 96), resize_rule="fixed")
    ref = PerceptionPipeline(model, **kwargs).infer_batch(frames)
    got = PerceptionPipeline(OnnxRuntimeEngine(onnx_path), **kwargs).infer_batch(frames)
    for r, g in zip(ref, got):
        assert g.depth.shape == (100, 150) and g.net_shape == (64, 96)
        np.testing.assert_allclose(g.depth, r.depth, rtol=1e-3, atol=1e-4 * float(np.abs(r.depth).max()))
        assert (g.labels == r.labels).mean() >= FP32_LABELS / 100


def test_make_engine_exports_once_and_reuses_the_cached_file(model, tmp_path):
    shape = (1, 3, 64, 64)
    first = make_engine(model, "onnxruntime", shape=shape, onnx_cache_dir=tmp_path)
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and "1x64x64" in files[0].name
    stamp = files[0].stat().st_mtime_ns
    second = make_engine(model, "onnxruntime", shape=shape, onnx_cache_dir=tmp_path)
    assert second.path == first.path and files[0].stat().st_mtime_ns == stamp
    x = torch.rand(shape) * 2 - 1
    torch.testing.assert_close(first(x)["depth"], second(x)["depth"])
