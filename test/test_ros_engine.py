"""The node's `backend` parameter puts an inference engine behind the same PerceptionPipeline."""
import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("onnxruntime")

from dpt_perception.inference.pipeline import PerceptionPipeline  # noqa: E402
from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.testing import randomize_  # noqa: E402
from dpt_perception.ros.node import build_engine  # noqa: E402


def test_eager_backend_is_the_model_itself():
    model = DPT(DPTConfig.tiny())
    assert build_engine(model, "eager", "cpu", "bf16") == (model, "cpu", "bf16")


def test_onnxruntime_backend_matches_eager_through_the_predictor(tmp_path, monkeypatch):
    monkeypatch.setenv("DPT_PERCEPTION_CACHE", str(tmp_path))  # the exported ONNX file goes here
    torch.manual_seed(0)
    model = DPT(DPTConfig.tiny(heads=("depth", "segmentation"), net_size=[64, 64])).eval()
    randomize_(model, seed=1)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    eager = PerceptionPipeline(model, device="cpu", net_size=(64, 64)).infer_image(rgb)
    engine, device, precision = build_engine(model, "onnxruntime", "auto", "fp32")
    assert (str(device), precision) == ("cpu", "fp32")
    onnx = PerceptionPipeline(engine, device=device, precision=precision, net_size=(64, 64)).infer_image(rgb)
    scale = float(np.abs(eager.depth).max())
    assert np.abs(onnx.depth - eager.depth).max() <= 1e-4 * scale + 1e-6
    assert (onnx.labels == eager.labels).mean() > 0.999
    assert list(tmp_path.rglob("*.onnx")), "the ONNX export was not cached"
