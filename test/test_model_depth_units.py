"""The one inverse-depth -> metres conversion (model.depth_units) and the one device reading
(model.devices), each used everywhere instead of local copies."""
import numpy as np
import pytest
import torch

from dpt_perception.inference import depth_semantics, metric_depth, pipeline
from dpt_perception.inference.backends import torch_engine
from dpt_perception.model import depth_to_metric
from dpt_perception.model.depth_units import METRIC_EPS, depth_from_inverse, metres_from_relative
from dpt_perception.model.devices import resolve_device
from dpt_perception.training import distributed, metrics


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_torch_conversion_is_the_written_formula_bit_for_bit(dtype):
    x = (torch.randn(10000, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    x[:3] = torch.tensor([0.0, -1.0, 1e-9]).to(dtype)
    for scale, shift in ((0.000305, 0.1378), (0.29, -0.11), (1.0, 0.0)):
        expected = 1.0 / torch.clamp(scale * x + shift, min=1e-8)
        got = depth_from_inverse(x, scale, shift)
        assert got.dtype == dtype and torch.equal(got, expected)
    per_image = torch.tensor([0.5, 2.0]).view(-1, 1, 1)  # per-frame pairs broadcast
    xb = x[:10000].float().view(2, 100, 50)
    assert torch.equal(depth_from_inverse(xb, per_image, -per_image / 10),
                       1.0 / (xb * per_image - per_image / 10).clamp(min=1e-8))


def test_torch_conversion_keeps_the_input_and_the_gradient():
    x = torch.rand(100, dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    depth_from_inverse(x, 0.5, 0.1).sum().backward()
    assert torch.equal(x.detach(), before)
    torch.testing.assert_close(x.grad, -0.5 / (0.5 * before + 0.1) ** 2, rtol=1e-12, atol=0)


def test_numpy_conversion_is_float32_and_clamped():
    x = np.array([1.0, 0.0, -2.0, np.nan], np.float64)
    got = depth_from_inverse(x, 0.5, 0.1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:3], np.float32(1.0) / np.maximum(
        x[:3].astype(np.float32) * np.float32(0.5) + np.float32(0.1), np.float32(METRIC_EPS)))
    assert np.isnan(got[3]) and x[1] == 0.0  # NaN passes through, the input is untouched


def test_every_user_takes_the_one_conversion_and_the_one_device_reading():
    assert metric_depth.depth_from_inverse is depth_from_inverse and metric_depth.METRIC_EPS == 1e-8
    for module in (pipeline, metrics):
        assert module.depth_from_inverse is depth_from_inverse, module.__name__
    for module in (pipeline, depth_semantics):  # relative + fixed/fitted pair -> metres
        assert module.metres_from_relative is metres_from_relative, module.__name__
    two = torch.tensor([2.0])
    assert torch.equal(depth_to_metric(two, 0.5, 0.1), depth_from_inverse(two, 0.5, 0.1))
    for module in (pipeline, torch_engine, distributed):
        assert module.resolve_device is resolve_device, module.__name__


def test_metres_from_a_relative_pair_put_non_positive_inverse_depth_at_infinity():
    relative = np.array([1.0, 0.2, 0.0, np.nan], np.float32)
    got = metres_from_relative(relative, 0.5, -0.1)  # inverse depth 0.4, 0.0, -0.1, NaN
    np.testing.assert_allclose(got[0], 2.5, rtol=1e-6)
    assert got[1] == np.inf and got[2] == np.inf  # REP 117 "too far", not 1e8 m
    assert np.isnan(got[3])


def test_resolve_device_for_a_training_rank():
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unsupported device"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda", local_rank=0)
