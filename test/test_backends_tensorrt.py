"""TensorRT engine cache keys (run everywhere) and engine builds (only with tensorrt + CUDA)."""

import importlib.util

import pytest
import torch

from dpt_perception.inference.backends.tensorrt_engine import TensorRTEngine, engine_cache_path, onnx_sha256

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def test_cache_key_changes_with_model_size_precision_gpu_and_version(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"model-a")
    base = engine_cache_path(onnx_file, (1, 3, 384, 384), "fp16", "NVIDIA H200", "10.3.0", cache_dir=tmp_path)
    assert base.parent == tmp_path and base.suffix == ".engine"
    assert "1x384x384" in base.name and "fp16" in base.name and "NVIDIA_H200" in base.name
    variants = [
        engine_cache_path(onnx_file, (1, 3, 384, 512), "fp16", "NVIDIA H200", "10.3.0", cache_dir=tmp_path),
        engine_cache_path(onnx_file, (2, 3, 384, 384), "fp16", "NVIDIA H200", "10.3.0", cache_dir=tmp_path),
        engine_cache_path(onnx_file, (1, 3, 384, 384), "bf16", "NVIDIA H200", "10.3.0", cache_dir=tmp_path),
        engine_cache_path(onnx_file, (1, 3, 384, 384), "fp16", "NVIDIA L4", "10.3.0", cache_dir=tmp_path),
        engine_cache_path(onnx_file, (1, 3, 384, 384), "fp16", "NVIDIA H200", "10.4.0", cache_dir=tmp_path),
    ]
    assert len({base, *variants}) == 6
    again = engine_cache_path(
        onnx_file, (1, 3, 384, 384), "fp16", "NVIDIA H200", "10.3.0", cache_dir=tmp_path
    )
    assert again == base
    onnx_file.write_bytes(b"model-b")  # new weights -> new engine
    assert (
        engine_cache_path(onnx_file, (1, 3, 384, 384), "fp16", "NVIDIA H200", "10.3.0", cache_dir=tmp_path)
        != base
    )


def test_hash_covers_external_data(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"graph")
    before = onnx_sha256(onnx_file)
    (tmp_path / "m.onnx.data").write_bytes(b"weights")
    assert onnx_sha256(onnx_file) != before


def test_bad_precision_is_rejected(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown TensorRT precision"):
        engine_cache_path(tmp_path / "m.onnx", (1, 3, 32, 32), "int4", "gpu", "10", cache_dir=tmp_path)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt and CUDA are available here")
def test_missing_tensorrt_or_cuda_is_a_clear_error(tmp_path):
    with pytest.raises((ImportError, RuntimeError), match="tensorrt|CUDA"):
        TensorRTEngine(tmp_path / "m.onnx")


@pytest.mark.skipif(not HAS_TRT, reason="needs the tensorrt package and a CUDA GPU")
@pytest.mark.slow
def test_tensorrt_engine_agrees_and_is_cached(tmp_path):
    from dpt_perception.inference.backends.agreement import LOW_PRECISION_TOLERANCE, compare_outputs
    from dpt_perception.inference.export import export_onnx
    from dpt_perception.model import DPT, DPTConfig

    torch.manual_seed(0)
    model = DPT(DPTConfig.tiny("vit_base")).eval()
    path = export_onnx(model, tmp_path / "tiny.onnx", 64, 96)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        ref = model(x)
    engine = TensorRTEngine(path, precision="fp16", cache_dir=tmp_path / "cache")
    agreement = compare_outputs(engine(x.cuda()), ref)
    assert agreement.within(*LOW_PRECISION_TOLERANCE), agreement.summary()
    assert len(list((tmp_path / "cache").glob("*.engine"))) == 1
    TensorRTEngine(path, precision="fp16", cache_dir=tmp_path / "cache")(x.cuda())  # reuses the file
    assert len(list((tmp_path / "cache").glob("*.engine"))) == 1
