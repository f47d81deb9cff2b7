"""dpt_node over real DDS: a camera process streams into a node process; this process subscribes.

Every output is checked against an independent computation from what the camera published
(headers, intrinsics scaling, label ranges, pinhole back-projection, palette colours), and the
runtime parameter interface is exercised through the real SetParameters service.
"""

import re

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.image_conversion import compressed_to_rgb8, image_to_rgb8, output_image_to_array  # noqa: E402
from dpt_perception.ros.pointcloud2 import cloud_to_arrays  # noqa: E402
from dpt_perception.ros.probe import OutputProbe  # noqa: E402

from conftest import node_start_up_problems  # noqa: E402
from helpers.ros_session import BEST_EFFORT, RosSession, stamp_key  # noqa: E402

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 160, 120
NUM_CLASSES = 5
DPT_MSGS = pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    config = DPTConfig.tiny(num_classes=NUM_CLASSES, net_size=[64, 64])
    save_model(DPT(config).eval(), tmp_path / "tiny")
    return tmp_path / "tiny.safetensors", config


def _wait_for_outputs(session, topics, count, timeout):
    probe = session.probe
    session.wait_for(lambda: all(probe.count(t) >= count for t in topics), timeout, f"{count} per output")


def test_node_outputs_match_independent_computations(ros_env, tiny_weights, tmp_path):
    weights, config = tiny_weights
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe

        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        node = s.start_node(
            "dpt_test_node", weights=weights, net_size=[64, 96], diagnostics_period=0.5, depth_mode="fixed",
            depth_scale=2.0, depth_shift=0.5,
        )
        # bgr8 input, CameraInfo calibrated at twice the streamed size (a binned stream).
        s.start_camera(
            rate=8.0, width=WIDTH, height=HEIGHT, encoding="bgr8", distinct_frames=2, camera_info_scale=2.0,
            frame_id="test_cam_optical",
        )

        # 1. Nobody subscribes to any output: frames arrive but nothing is computed.
        skipped = "frames skipped (no subscribers)"
        s.wait_for(lambda: int(s.camera_status().get(skipped, 0)) >= 3, 60.0, "skipped frames reported")
        assert s.camera_status()["frames processed"] == "0"

        # 2. Subscribe to everything (and to the camera itself, for the source headers/pixels).
        topics = {
            "/dpt/depth": Image,
            "/dpt/depth/relative_inverse": Image,
            "/dpt/depth/camera_info": CameraInfo,
            "/dpt/labels": Image,
            "/dpt/labels/color": Image,
            "/dpt/points": PointCloud2,
            "/camera/image_raw": Image,
            "/camera/camera_info": CameraInfo,
        }
        for topic, msg_type in topics.items():
            probe.subscribe(topic, msg_type, BEST_EFFORT)
        _wait_for_outputs(s, topics, 3, 60.0)

        sources = {stamp_key(m.header): m for _, m in probe.messages["/camera/image_raw"]}
        infos = {stamp_key(m.header): m for _, m in probe.messages["/camera/camera_info"]}
        by_stamp = {t: {stamp_key(m.header): m for _, m in probe.messages[t]} for t in topics}
        common = set(sources)
        for topic in (
            "/dpt/depth",
            "/dpt/depth/relative_inverse",
            "/dpt/labels",
            "/dpt/labels/color",
            "/dpt/points",
            "/dpt/depth/camera_info",
        ):
            common &= set(by_stamp[topic])
            for msg in by_stamp[topic].values():  # the camera's frame_id, never restamped
                assert msg.header.frame_id == "test_cam_optical"
        assert common, "no camera frame with all outputs received"
        stamp = sorted(common)[-1]
        src = sources[stamp]
        rgb = image_to_rgb8(src)

        depth_msg = by_stamp["/dpt/depth"][stamp]
        assert (depth_msg.encoding, depth_msg.height, depth_msg.width) == ("32FC1", HEIGHT, WIDTH)
        depth = output_image_to_array(depth_msg)
        rel_msg = by_stamp["/dpt/depth/relative_inverse"][stamp]
        assert (rel_msg.encoding, rel_msg.height, rel_msg.width) == ("32FC1", HEIGHT, WIDTH)
        relative = output_image_to_array(rel_msg)
        # fixed mode: 1/z = 2.0 * x + 0.5
        expected = 1.0 / np.maximum(2.0 * relative.astype(np.float64) + 0.5, 1e-8)
        np.testing.assert_allclose(depth, expected, rtol=1e-5)

        info = by_stamp["/dpt/depth/camera_info"][stamp]
        src_info = infos[stamp]
        assert (info.height, info.width) == (HEIGHT, WIDTH) and (src_info.height, src_info.width) == (
            2 * HEIGHT,
            2 * WIDTH,
        )
        k_src = np.array(src_info.k).reshape(3, 3)
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3)[:2], k_src[:2] * 0.5)
        np.testing.assert_allclose(np.array(info.p).reshape(3, 4)[:2, :3], k_src[:2] * 0.5)

        labels_msg = by_stamp["/dpt/labels"][stamp]
        assert (labels_msg.encoding, labels_msg.height, labels_msg.width) == ("mono8", HEIGHT, WIDTH)
        labels = output_image_to_array(labels_msg)
        assert labels.max() < NUM_CLASSES
        color_msg = by_stamp["/dpt/labels/color"][stamp]
        assert color_msg.encoding == "rgb8"
        palette = np.array(config.class_colors, dtype=np.uint8)
        np.testing.assert_array_equal(output_image_to_array(color_msg), palette[labels])

        cloud = by_stamp["/dpt/points"][stamp]
        assert (cloud.height, cloud.width, cloud.is_dense) == (HEIGHT, WIDTH, False)
        fields = cloud_to_arrays(cloud)
        fx, fy, cx, cy = info.p[0], info.p[5], info.p[2], info.p[6]
        v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
        valid = np.isfinite(depth) & (depth > 0)
        z = np.where(valid, depth, np.nan)
        np.testing.assert_allclose(fields["z"], z, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(fields["x"], (u - cx) * z / fx, rtol=1e-5, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(fields["y"], (v - cy) * z / fy, rtol=1e-5, atol=1e-6, equal_nan=True)
        packed = fields["rgb"].view(np.uint32)
        np.testing.assert_array_equal(
            np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], -1), rgb
        )
        np.testing.assert_array_equal(fields["label"], labels)

        # 3. The class table is latched: a subscriber joining now still gets it.
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        probe.subscribe("/dpt/class_table", DPT_MSGS.ClassTable, latched)
        s.wait_for(lambda: probe.count("/dpt/class_table") >= 1, 15.0, "the latched class table")
        table = probe.latest("/dpt/class_table")
        assert [c.id for c in table.classes] == list(range(NUM_CLASSES))
        assert [c.name for c in table.classes] == config.class_names
        assert table.model_name == str(weights)
        np.testing.assert_allclose(
            [[c.color.r, c.color.g, c.color.b] for c in table.classes],
            np.array(config.class_colors) / 255.0,
            rtol=1e-6,
        )

        # 4. Diagnostics describe the stream.
        s.wait_for(lambda: s.camera_status().get("network input (HxW)") == "64x96", 10.0, "input 64x96")
        values = s.camera_status()
        assert values["device"] == "cpu" and values["precision"] == "fp32"
        assert float(values["input rate (Hz)"]) > 0 and int(values["frames processed"]) > 0

        # 5. Runtime resolution change through the SetParameters service, and rejected values.
        results = s.set_parameters("dpt_test_node", net_size=[96, 128])
        assert results[0].successful, results[0].reason
        s.wait_for(lambda: s.camera_status().get("network input (HxW)") == "96x128", 20.0, "input 96x128")
        results = s.set_parameters("dpt_test_node", net_size=[100, 128])
        assert not results[0].successful and "multiple of 32" in results[0].reason
        results = s.set_parameters("dpt_test_node", weights="other.safetensors")
        assert not results[0].successful and "read-only" in results[0].reason.lower()
        results = s.set_parameters("dpt_test_node", labels_blend=2.0)
        assert not results[0].successful
        probe.spin_for(1.5)
        assert s.camera_status().get("network input (HxW)") == "96x128"
        # Every per-size cache with entries/bound: two network sizes ran, so two token grids.
        found = re.findall(r"([a-z_]+) (\d+)/(\d+)", s.camera_status()["caches"])
        caches = {name: (int(used), int(bound)) for name, used, bound in found}
        assert {"pos_embed", "label_taps", "point_rays"} <= set(caches), caches
        assert all(used <= bound for used, bound in caches.values()), caches
        assert 2 <= caches["pos_embed"][0] <= 8, caches

        # 6. A malformed image is rejected with a reason and the node keeps serving.
        bad_pub = probe.node.create_publisher(Image, "/camera/image_raw", BEST_EFFORT)
        bad = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH)  # step too small
        bad.data = bytes(WIDTH * HEIGHT)
        before = probe.count("/dpt/depth")

        def rejected():  # keep sending: a bad frame may be replaced by a camera frame before the worker looks
            bad_pub.publish(bad)
            return int(s.camera_status().get("bad messages", 0)) >= 1

        s.wait_for(rejected, 20.0, "the malformed image counted as a bad message")
        assert "step" in s.camera_status()["last bad message"]
        s.wait_for(lambda: probe.count("/dpt/depth") >= before + 2, 20.0, "node still serving")
        assert node.poll() is None


def test_two_compressed_cameras_are_batched_and_match_the_predictor(
    ros_env, tiny_weights, tmp_path
):
    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.model.checkpoints import load_model

    weights, _ = tiny_weights
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        s.start_node(
            weights=weights, net_size=[64, 64], cameras="['/front', '/rear']", image_transport="compressed",
            depth_mode="fixed",
        )
        for name, fmt in (("front", "png"), ("rear", "jpeg")):
            s.start_camera(
                name, f"camera_{name}", log=f"camera_{name}", encoding=fmt, width=WIDTH, height=HEIGHT,
                rate=6.0, distinct_frames=1, frame_id=f"{name}_optical",
            )
        for name in ("front", "rear"):
            probe.subscribe(f"/{name}/camera/image_raw/compressed", CompressedImage, BEST_EFFORT)
            probe.subscribe(f"/dpt/{name}/depth/relative_inverse", Image, BEST_EFFORT)
            probe.subscribe(f"/dpt/{name}/labels", Image, BEST_EFFORT)
        topics = list(probe.messages)
        _wait_for_outputs(s, topics, 2, 90.0)

        predictor = PerceptionPipeline(load_model(weights), device="cpu", net_size=(64, 64))
        for name in ("front", "rear"):
            source = probe.latest(f"/{name}/camera/image_raw/compressed")
            rel = probe.latest(f"/dpt/{name}/depth/relative_inverse")
            labels = probe.latest(f"/dpt/{name}/labels")
            assert rel.header.frame_id == labels.header.frame_id == f"{name}_optical"
            expected = predictor.infer_image(compressed_to_rgb8(source))  # one distinct frame per camera
            np.testing.assert_allclose(output_image_to_array(rel), expected.depth, rtol=1e-3, atol=1e-5)
            agree = (output_image_to_array(labels) == expected.labels).mean()
            assert agree > 0.99, f"{name}: labels agree on only {agree:.1%} of pixels"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["weights:=/nonexistent/model.safetensors"], "could not load weights"),
        (["depth_mode:=model"], "needs a metric model"),
        (["net_size:=[100, 64]"], "multiple of 32"),
        (["precision:=fp16", "device:=cpu"], "fp16"),
        (["backend:=warp"], "backend must be one of"),
    ],
)
def test_startup_failures_exit_nonzero_with_a_reason(ros_env, tiny_weights, tmp_path, params, message):
    weights, _ = tiny_weights
    cases = {"bad_start": (params, [message])}
    problems = node_start_up_problems(cases, ros_env, "dpt_", common=[f"weights:={weights}"], timeout=90.0)
    assert not problems, "\n".join(problems)


def test_probe_helpers_time_out_cleanly():
    """spin_until returns False (it does not hang) when nothing ever arrives."""
    probe = OutputProbe(domain_id=101)
    try:
        probe.subscribe("/nothing_here", Image, BEST_EFFORT)
        assert not probe.spin_until(lambda: probe.count("/nothing_here") > 0, 0.3)
    finally:
        probe.close()


def test_fit_mode_waits_for_sparse_depth_then_publishes_fitted_metres(
    ros_env, tiny_weights, tmp_path
):
    """No metres before a fit; then sparse metric depth consistent with 1/z = 0.3 x + 0.2 (made in
    this process from the node's own relative output) yields exactly those metres."""
    weights, _ = tiny_weights
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe

        for topic in ("/dpt/depth", "/dpt/depth/relative_inverse"):
            probe.subscribe(topic, Image, BEST_EFFORT)
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        s.start_node(
            weights=weights, net_size=[64, 64], sparse_depth_topic="camera/sparse_depth",
            sparse_depth_max_age=30.0, diagnostics_period=0.5,
        )
        s.start_camera(width=WIDTH, height=HEIGHT, rate=6.0, distinct_frames=1)
        s.wait_for(lambda: probe.count("/dpt/depth/relative_inverse") >= 4, 60.0, "4 relative depth images")
        assert probe.count("/dpt/depth") == 0, "metres published before any scale/shift was fitted"
        s.wait_for(lambda: s.camera_status().get("depth mode") == "fit", 10.0, "depth mode fit reported")
        assert s.camera_status()["depth scale/shift (inverse)"] == "not fitted yet"

        sparse_pub = probe.node.create_publisher(Image, "/camera/sparse_depth", BEST_EFFORT)
        rng = np.random.default_rng(0)
        from dpt_perception.ros.image_conversion import array_to_image

        def publish_sparse():
            rel_msg = probe.latest("/dpt/depth/relative_inverse")
            x = output_image_to_array(rel_msg).astype(np.float64)
            metres = 1.0 / (0.3 * x + 0.2)
            sparse = np.where(rng.random(x.shape) < 0.05, metres, np.nan).astype(np.float32)
            sparse_pub.publish(array_to_image(sparse, "32FC1", rel_msg.header))

        def fitted():
            publish_sparse()
            return probe.count("/dpt/depth") >= 3

        s.wait_for(fitted, 60.0, "3 depth images in metres after the fit")
        probe.spin_for(2.0)
        # Both topics are best effort: compare the newest depth image whose relative twin arrived.
        rel_by_stamp = {stamp_key(m.header): m for _, m in probe.messages["/dpt/depth/relative_inverse"]}
        pairs = [(m, rel_by_stamp[stamp_key(m.header)]) for _, m in probe.messages["/dpt/depth"]
                 if stamp_key(m.header) in rel_by_stamp]
        assert pairs, "no depth image with its relative-inverse twin received"
        depth_msg, rel = pairs[-1]
        x = output_image_to_array(rel).astype(np.float64)
        np.testing.assert_allclose(output_image_to_array(depth_msg), 1.0 / (0.3 * x + 0.2), rtol=1e-3)
