"""dpt_node with `preprocessing:=reference` over real DDS: its outputs are the official pipeline's
(PerceptionPipeline with preprocessing="reference"), not the default fast path's."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from sensor_msgs.msg import Image  # noqa: E402

from dpt_perception.model.checkpoints import load_model, save_model  # noqa: E402
from dpt_perception.model.testing import tiny_model  # noqa: E402
from dpt_perception.ros.image_conversion import image_to_rgb8, output_image_to_array  # noqa: E402
from dpt_perception.ros.parameters import validate_value  # noqa: E402

from helpers.ros_session import BEST_EFFORT, RosSession  # noqa: E402

pytestmark = pytest.mark.integration


def test_preprocessing_values_are_validated():
    assert validate_value("preprocessing", "reference") is None
    assert validate_value("preprocessing", "fast") is None
    reason = validate_value("preprocessing", "official")
    assert reason is not None and "preprocessing" in reason and "'reference'" in reason


def test_node_with_reference_preprocessing_publishes_the_reference_outputs(ros_env, tmp_path):
    from dpt_perception.inference.pipeline import PerceptionPipeline

    model = tiny_model(seed=0, num_classes=5, net_size=[64, 64], depth_weight_scale=50.0)  # a live depth map
    weights, _ = save_model(model, tmp_path / "tiny")
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        s.start_node(weights=weights, net_size=[64, 64], depth_mode="fixed", preprocessing="reference")
        s.start_camera(width=150, height=100, rate=6.0, distinct_frames=1, encoding="rgb8")
        for topic in ("/camera/image_raw", "/dpt/depth/relative_inverse", "/dpt/labels"):
            probe.subscribe(topic, Image, BEST_EFFORT)
        s.wait_for(lambda: all(probe.count(t) >= 2 for t in probe.messages), 90.0, "2 messages per topic")
        rgb = image_to_rgb8(probe.latest("/camera/image_raw"))  # one distinct frame
        depth = output_image_to_array(probe.latest("/dpt/depth/relative_inverse"))
        labels = output_image_to_array(probe.latest("/dpt/labels"))
    model = load_model(weights)
    reference_pipeline = PerceptionPipeline(model, device="cpu", net_size=(64, 64), preprocessing="reference")
    reference = reference_pipeline.infer_image(rgb)
    fast = PerceptionPipeline(model, device="cpu", net_size=(64, 64)).infer_image(rgb)
    np.testing.assert_allclose(depth, reference.depth, rtol=1e-5, atol=1e-6)
    # the node's forward may use other thread counts: ties within float rounding may flip
    assert (labels == reference.labels).mean() > 0.999
    # the reference keeps the bicubic overshoot below 0 that the fast path clamps
    assert reference.depth.min() < 0 and fast.depth.min() >= 0 and depth.min() < 0
