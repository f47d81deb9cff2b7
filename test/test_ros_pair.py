"""A depth + segmentation pair (two single-task checkpoints with different encoders) served by the
node over real DDS: every output appears, depth equals the depth model alone and labels the
segmentation model alone on the frames the camera sent, and the start-up log and /diagnostics name
the two-encoder cost. Bad pairs fail start-up with a clear message."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from dpt_perception.inference.pipeline import PerceptionPipeline  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.model.testing import tiny_model  # noqa: E402
from dpt_perception.ros.image_conversion import image_to_rgb8, output_image_to_array  # noqa: E402

from conftest import node_start_up_problems  # noqa: E402
from helpers.ros_session import BEST_EFFORT, RosSession, stamp_key  # noqa: E402

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 96, 64
OUTPUTS = {
    "/dpt/depth": Image,
    "/dpt/depth/relative_inverse": Image,
    "/dpt/labels": Image,
    "/dpt/labels/color": Image,
    "/dpt/points": PointCloud2,
}


@pytest.fixture
def teachers(tmp_path):
    depth = tiny_model("vit_hybrid", heads=["depth"], seed=1, net_size=[64, 96])
    seg = tiny_model("vit_base", heads=["segmentation"], seed=2, num_classes=6)
    save_model(depth, tmp_path / "depth_teacher")
    save_model(seg, tmp_path / "seg_teacher")
    return depth, seg, tmp_path / "depth_teacher.safetensors", tmp_path / "seg_teacher.safetensors"


def test_pair_serves_every_output_each_equal_to_its_own_model(ros_env, teachers, tmp_path):
    depth, seg, depth_file, seg_file = teachers
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        node = s.start_node(
            "dpt_pair_node", weights=[seg_file, depth_file], depth_mode="fixed", depth_shift=0.5,
            diagnostics_period=0.5,
        )
        s.start_camera(rate=5.0, width=WIDTH, height=HEIGHT, distinct_frames=2)
        probe.subscribe("/camera/image_raw", Image, BEST_EFFORT)
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        for topic, msg_type in OUTPUTS.items():
            probe.subscribe(topic, msg_type, BEST_EFFORT)
        s.wait_for(lambda: all(probe.count(t) >= 3 for t in OUTPUTS), 90.0, "3 messages on every output")

        def stamps(topic):
            return {stamp_key(m.header) for _, m in probe.messages[topic]}

        def shared():  # frames whose camera image AND both outputs this probe received
            return stamps("/camera/image_raw") & stamps("/dpt/depth/relative_inverse") & stamps("/dpt/labels")

        # The probe's image subscription may match after the first outputs: wait for an overlap.
        s.wait_for(lambda: bool(shared()), 60.0, "a frame with both outputs and its camera image")
        frames = {stamp_key(m.header): image_to_rgb8(m) for _, m in probe.messages["/camera/image_raw"]}
        relative = {stamp_key(m.header): m for _, m in probe.messages["/dpt/depth/relative_inverse"]}
        labels = {stamp_key(m.header): m for _, m in probe.messages["/dpt/labels"]}
        common = sorted(set(frames) & set(relative) & set(labels))
        depth_alone = PerceptionPipeline(depth, device="cpu")
        seg_alone = PerceptionPipeline(seg, device="cpu", net_size=(64, 96))
        for key in common:
            rgb = frames[key]
            np.testing.assert_allclose(
                output_image_to_array(relative[key]), depth_alone.infer_image(rgb).depth, rtol=1e-5, atol=1e-6
            )
            want_labels = seg_alone.infer_image(rgb).labels
            np.testing.assert_array_equal(output_image_to_array(labels[key]), want_labels)

        log = s.log()
        assert "TWO encoders per frame" in log, log[-3000:]
        s.wait_for(
            lambda: probe.latest_status(suffix=": camera") is not None, 20.0, "a camera diagnostics status"
        )
        values = s.camera_status()
        assert "TWO encoders" in values["model"] and " ms " in values["model"], values
        assert values["encoder passes per frame"] == "2.00", values
        assert "seg_teacher" in values["weights"] and "depth_teacher" in values["weights"]
        assert node.poll() is None


def test_bad_pairs_fail_start_up_clearly(ros_env, teachers, tmp_path):
    _, _, depth_file, seg_file = teachers
    cases = {
        "two_depth": ([f"weights:=[{depth_file}, {depth_file}]"], ["a depth model and a depth model"]),
        "three": ([f"weights:=[{depth_file}, {seg_file}, {seg_file}]"], ["[depth, segmentation] pair"]),
        "with_preset": (
            [f"weights:=[{depth_file}, {seg_file}]", "model:=dpt_hybrid_nyu"],
            ["must identify itself"],
        ),
        "sky_requested": (
            [f"weights:=[{depth_file}, {seg_file}]", "too_far_classes:=[sky]"],
            ["unknown class name(s) ['sky']", "class_0"],
        ),
    }
    problems = node_start_up_problems(cases, ros_env, "dpt_bad_pair_")
    assert not problems, "\n\n".join(problems)
