"""PyTorch backends (eager, bf16, channels-last, compiled, CUDA paths) agree with eager fp32.

Tolerances (backends/agreement.py, reported in docs/deployment.md):
  fp32 variants (channels-last, compiled): depth aligned relative error <= 1e-4, labels >= 99.9 %;
  bf16 / fp16: depth aligned relative error <= 5e-2, labels >= 95 % (random tiny weights; the
  low precisions are judged on trained weights with task metrics elsewhere).
"""
import pytest
import torch

from dpt_perception.inference.backends import make_engine
from dpt_perception.inference.backends.agreement import (
    FP32_TOLERANCE,
    LOW_PRECISION_TOLERANCE,
    aligned_depth_error,
    compare_outputs,
    label_agreement,
)
from dpt_perception.inference.backends.torch_engine import TorchEngine
from dpt_perception.model import DPT, DPTConfig
from dpt_perception.model.testing import tiny_model

FP32_DEPTH, FP32_LABELS = FP32_TOLERANCE
LOW_DEPTH, LOW_LABELS = LOW_PRECISION_TOLERANCE
HAS_CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def model():
    # A depth map whose spread is large next to its offset, so bf16's output rounding is not all
    # that is measured.
    return tiny_model("vit_base", seed=0, depth_bias=0.05, depth_weight_scale=10.0)


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(3)
    return torch.rand((2, 3, 64, 96), generator=gen) * 2 - 1


@pytest.fixture(scope="module")
def reference(model, inputs):
    with torch.inference_mode():
        out = model(inputs)
    # Random weights can leave a ReLU head all zero; then depth agreement would be vacuous.
    assert float(out["depth"].std()) > 0
    return out


def test_agreement_metrics_are_affine_invariant_and_detect_differences():
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand((2, 16, 16), generator=gen, dtype=torch.float64)
    assert aligned_depth_error(3.0 * ref + 2.0, ref) < 1e-9
    noisy = ref + 0.1 * torch.randn((2, 16, 16), generator=gen, dtype=torch.float64)
    assert 0.05 < aligned_depth_error(noisy, ref) < 1.0
    logits = torch.randn((1, 4, 8, 8), generator=gen)
    assert label_agreement(logits, logits) == 100.0
    flipped = logits.clone()
    flipped[0, :, 0, 0] = -flipped[0, :, 0, 0]  # changes the argmax of exactly one pixel
    assert label_agreement(flipped, logits) == pytest.approx(100.0 * 63 / 64)


def test_eager_fp32_is_the_model_itself(model, inputs, reference):
    engine = make_engine(model, "eager")
    out = engine(inputs)
    assert set(out) == {"depth", "segmentation"}
    for k in out:
        assert out[k].dtype == torch.float32
        torch.testing.assert_close(out[k], reference[k], rtol=0, atol=0)
    assert engine.model is model  # fp32 on the same device: no copy


def test_heads_argument_limits_outputs(model, inputs):
    engine = make_engine(model, "eager")
    assert set(engine(inputs, heads=("depth",))) == {"depth"}
    with pytest.raises(ValueError, match="no output"):
        depth_only = make_engine(DPT(DPTConfig.tiny("vit_base", heads=("depth",))), "eager")
        depth_only(inputs, heads=("segmentation",))


@pytest.mark.parametrize("mode", ["autocast", "weights"])
def test_bf16_agrees_with_fp32(model, inputs, reference, mode):
    engine = make_engine(model, "eager", precision="bf16", precision_mode=mode)
    agreement = compare_outputs(engine(inputs), reference)
    assert agreement.depth_error <= LOW_DEPTH, agreement.summary()
    assert agreement.label_agreement >= LOW_LABELS, agreement.summary()
    # bf16 really ran: outputs are not bit-identical to fp32.
    assert max(agreement.max_abs_error.values()) > 0
    if mode == "weights":
        assert next(engine.model.parameters()).dtype == torch.bfloat16
        assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched


def test_channels_last_agrees_with_fp32(model, inputs, reference):
    engine = make_engine(model, "eager", channels_last=True)
    agreement = compare_outputs(engine(inputs), reference)
    assert agreement.within(FP32_DEPTH, FP32_LABELS), agreement.summary()
    assert engine.model is not model
    conv = engine.model.encoder.patch_embed.proj.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compiled_agrees_with_fp32(model, inputs, reference):
    engine = make_engine(model, "compiled")
    agreement = compare_outputs(engine(inputs), reference)
    assert agreement.within(FP32_DEPTH, FP32_LABELS), agreement.summary()
    assert engine.name == "compiled"


def test_invalid_settings_fail_clearly(model):
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        make_engine(model, "eager", device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        make_engine(model, "eager", precision="int8")
    with pytest.raises(ValueError, match="unknown backend"):
        make_engine(model, "jax")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make_engine(model, "eager", cuda_graphs=True)
    with pytest.raises(ValueError, match="freezing"):
        TorchEngine(model, freezing=True)


def test_engine_rejects_bad_inputs_and_device_moves(model):
    engine = make_engine(model, "eager")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        engine(torch.zeros(1, 4, 32, 32))
    assert engine.eval() is engine and engine.to("cpu") is engine
    with pytest.raises(ValueError, match="cannot move"):
        engine.to("meta")


# ---- CUDA (skipped on machines without a GPU) ---------------------------------------------------
@cuda_only
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_precisions_agree_with_cpu_fp32(model, inputs, reference, precision):
    engine = make_engine(model, "eager", device="cuda", precision=precision, channels_last=True)
    agreement = compare_outputs(engine(inputs.cuda()), reference)
    # TF32 may be on for fp32 convolutions, so fp32 on the GPU gets the low-precision bounds too.
    assert agreement.within(LOW_DEPTH, LOW_LABELS), agreement.summary()


@cuda_only
def test_cuda_graphs_recapture_per_shape_and_agree(model, inputs, reference):
    engine = make_engine(model, "eager", device="cuda", cuda_graphs=True, max_graph_shapes=2)
    first = engine(inputs.cuda())
    again = engine(inputs.cuda())
    assert engine._graphs.captures == 1
    for k in first:
        torch.testing.assert_close(first[k], again[k])
    agreement = compare_outputs(first, reference)
    assert agreement.within(LOW_DEPTH, LOW_LABELS), agreement.summary()
    other = torch.rand(1, 3, 96, 64, device="cuda") * 2 - 1
    out = engine(other)
    assert engine._graphs.captures == 2
    assert out["depth"].shape == (1, 96, 64)
    engine(torch.rand(1, 3, 64, 64, device="cuda"))  # third shape evicts the least recent
    assert len(engine._graphs.cached_shapes) == 2


@cuda_only
@pytest.mark.slow
def test_cuda_compiled_bf16_agrees(model, inputs, reference):
    engine = make_engine(model, "compiled", device="cuda", precision="bf16")
    agreement = compare_outputs(engine(inputs.cuda()), reference)
    assert agreement.within(LOW_DEPTH, LOW_LABELS), agreement.summary()
