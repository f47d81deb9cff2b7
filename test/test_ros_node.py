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
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.image_conversion import compressed_to_rgb8, image_to_rgb8, output_image_to_array  # noqa: E402
from dpt_perception.ros.pointcloud2 import cloud_to_arrays  # noqa: E402
from dpt_perception.ros.probe import (  # noqa: E402
    OutputProbe,
    param_args,
    start_process,
    status_values,
    stop_process,
)

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 160, 120
NUM_CLASSES = 5
BEST_EFFORT = qos_profile_sensor_data
DPT_MSGS = pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    config = DPTConfig.tiny(num_classes=NUM_CLASSES, net_size=[64, 64])
    save_model(DPT(config).eval(), tmp_path / "tiny")
    return tmp_path / "tiny.safetensors", config


def _stamp_key(header):
    return (header.stamp.sec, header.stamp.nanosec)


def _diag_values(probe, camera_key="camera"):
    """Key/value dict of the newest diagnostics status of `camera_key`, or {}."""
    status = probe.latest_status(suffix=f": {camera_key}")
    return {} if status is None else status_values(status) | {"__level": status.level}


def _set_parameters(probe, node_name, **values):
    client = probe.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert probe.spin_until(lambda: client.service_is_ready(), 15.0), "parameter service never appeared"
    request = SetParameters.Request()
    for name, value in values.items():
        if isinstance(value, list):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY, integer_array_value=value)
        elif isinstance(value, str):
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
        request.parameters.append(Parameter(name=name, value=pv))
    response = probe.call(client, request, timeout=30.0)  # setting the same values twice is harmless
    assert response is not None, "SetParameters call timed out"
    return response.results


def _wait_for_outputs(probe, topics, count, timeout):
    return probe.spin_until(lambda: all(probe.count(t) >= count for t in topics), timeout)


def test_node_outputs_match_independent_computations(ros_env, tiny_weights, tmp_path):
    weights, config = tiny_weights
    node = camera = probe = None
    try:
        probe = OutputProbe(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        node = start_process(
            "dpt_perception.ros.node",
            [
                "-r",
                "__node:=dpt_test_node",
                *param_args(
                    weights=weights,
                    net_size=[64, 96],
                    diagnostics_period=0.5,
                    depth_mode="fixed",
                    depth_scale=2.0,
                    depth_shift=0.5,
                ),
            ],
            ros_env,
            tmp_path / "node.log",
        )
        # bgr8 input, CameraInfo calibrated at twice the streamed size (a binned stream).
        camera = start_process(
            "dpt_perception.ros.camera_publisher",
            param_args(
                rate=8.0,
                width=WIDTH,
                height=HEIGHT,
                encoding="bgr8",
                distinct_frames=2,
                camera_info_scale=2.0,
                frame_id="test_cam_optical",
            ),
            ros_env,
            tmp_path / "camera.log",
        )

        # 1. Nobody subscribes to any output: frames arrive but nothing is computed.
        assert probe.spin_until(
            lambda: int(_diag_values(probe).get("frames skipped (no subscribers)", 0)) >= 3, 60.0
        ), f"node never reported skipped frames; log:\n{_read(tmp_path / 'node.log')}"
        assert _diag_values(probe)["frames processed"] == "0"

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
        assert _wait_for_outputs(probe, topics, 3, 60.0), {t: probe.count(t) for t in topics}

        sources = {_stamp_key(m.header): m for _, m in probe.messages["/camera/image_raw"]}
        infos = {_stamp_key(m.header): m for _, m in probe.messages["/camera/camera_info"]}
        by_stamp = {t: {_stamp_key(m.header): m for _, m in probe.messages[t]} for t in topics}
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
        assert probe.spin_until(lambda: probe.count("/dpt/class_table") >= 1, 15.0), "class table not latched"
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
        assert probe.spin_until(lambda: _diag_values(probe).get("network input (HxW)") == "64x96", 10.0)
        values = _diag_values(probe)
        assert values["device"] == "cpu" and values["precision"] == "fp32"
        assert float(values["input rate (Hz)"]) > 0 and int(values["frames processed"]) > 0

        # 5. Runtime resolution change through the SetParameters service, and rejected values.
        results = _set_parameters(probe, "dpt_test_node", net_size=[96, 128])
        assert results[0].successful, results[0].reason
        assert probe.spin_until(lambda: _diag_values(probe).get("network input (HxW)") == "96x128", 20.0)
        results = _set_parameters(probe, "dpt_test_node", net_size=[100, 128])
        assert not results[0].successful and "multiple of 32" in results[0].reason
        results = _set_parameters(probe, "dpt_test_node", weights="other.safetensors")
        assert not results[0].successful and "read-only" in results[0].reason.lower()
        results = _set_parameters(probe, "dpt_test_node", labels_blend=2.0)
        assert not results[0].successful
        probe.spin_for(1.5)
        assert _diag_values(probe).get("network input (HxW)") == "96x128"
        # Every per-size cache with entries/bound: two network sizes ran, so two token grids.
        found = re.findall(r"([a-z_]+) (\d+)/(\d+)", _diag_values(probe)["caches"])
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
            return int(_diag_values(probe).get("bad messages", 0)) >= 1

        assert probe.spin_until(rejected, 20.0)
        assert "step" in _diag_values(probe)["last bad message"]
        assert probe.spin_until(lambda: probe.count("/dpt/depth") >= before + 2, 20.0), "node stopped serving"
        assert node.poll() is None
    finally:
        stop_process(camera)
        stop_process(node)
        if probe is not None:
            probe.close()


def test_two_compressed_cameras_are_batched_and_match_the_predictor(
    ros_env, tiny_weights, tmp_path
):
    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.model.checkpoints import load_model

    weights, _ = tiny_weights
    procs = []
    probe = None
    try:
        probe = OutputProbe(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
        procs.append(
            start_process(
                "dpt_perception.ros.node",
                param_args(
                    weights=weights,
                    net_size=[64, 64],
                    cameras="['/front', '/rear']",
                    image_transport="compressed",
                    depth_mode="fixed",
                ),
                ros_env,
                tmp_path / "node.log",
            )
        )
        for name, fmt in (("front", "png"), ("rear", "jpeg")):
            procs.append(
                start_process(
                    "dpt_perception.ros.camera_publisher",
                    [
                        "-r",
                        f"__ns:=/{name}",
                        "-r",
                        f"__node:=camera_{name}",
                        *param_args(
                            encoding=fmt,
                            width=WIDTH,
                            height=HEIGHT,
                            rate=6.0,
                            distinct_frames=1,
                            frame_id=f"{name}_optical",
                        ),
                    ],
                    ros_env,
                    tmp_path / f"camera_{name}.log",
                )
            )
        for name in ("front", "rear"):
            probe.subscribe(f"/{name}/camera/image_raw/compressed", CompressedImage, BEST_EFFORT)
            probe.subscribe(f"/dpt/{name}/depth/relative_inverse", Image, BEST_EFFORT)
            probe.subscribe(f"/dpt/{name}/labels", Image, BEST_EFFORT)
        topics = list(probe.messages)
        assert _wait_for_outputs(probe, topics, 2, 90.0), {t: probe.count(t) for t in topics}

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
    finally:
        for proc in procs:
            stop_process(proc)
        if probe is not None:
            probe.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["-p", "weights:=/nonexistent/model.safetensors"], "could not load weights"),
        (["-p", "depth_mode:=model"], "needs a metric model"),
        (["-p", "net_size:=[100, 64]"], "multiple of 32"),
        (["-p", "precision:=fp16", "-p", "device:=cpu"], "fp16"),
        (["-p", "backend:=warp"], "backend must be one of"),
    ],
)
def test_startup_failures_exit_nonzero_with_a_reason(ros_env, tiny_weights, tmp_path, params, message):
    weights, _ = tiny_weights
    args = ["-p", f"weights:={weights}", *params]
    proc = start_process("dpt_perception.ros.node", args, ros_env, tmp_path / "node.log")
    try:
        code = proc.wait(90)
    finally:
        stop_process(proc)
    log = _read(tmp_path / "node.log")
    assert code == 1, log
    assert "dpt_node failed to start" in log and message in log, log


def _read(path):
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


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
    node = camera = probe = None
    try:
        probe = OutputProbe(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
        for topic in ("/dpt/depth", "/dpt/depth/relative_inverse"):
            probe.subscribe(topic, Image, BEST_EFFORT)
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        node = start_process(
            "dpt_perception.ros.node",
            param_args(
                weights=weights,
                net_size=[64, 64],
                sparse_depth_topic="camera/sparse_depth",
                sparse_depth_max_age=30.0,
                diagnostics_period=0.5,
            ),
            ros_env,
            tmp_path / "node.log",
        )
        camera = start_process(
            "dpt_perception.ros.camera_publisher",
            param_args(
                width=WIDTH,
                height=HEIGHT,
                rate=6.0,
                distinct_frames=1,
            ),
            ros_env,
            tmp_path / "camera.log",
        )
        assert probe.spin_until(lambda: probe.count("/dpt/depth/relative_inverse") >= 4, 60.0), _read(
            tmp_path / "node.log"
        )
        assert probe.count("/dpt/depth") == 0, "metres published before any scale/shift was fitted"
        assert probe.spin_until(lambda: _diag_values(probe).get("depth mode") == "fit", 10.0)
        assert _diag_values(probe)["depth scale/shift (inverse)"] == "not fitted yet"

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

        assert probe.spin_until(fitted, 60.0), _diag_values(probe)
        probe.spin_for(2.0)
        # Both topics are best effort: compare the newest depth image whose relative twin arrived.
        rel_by_stamp = {_stamp_key(m.header): m for _, m in probe.messages["/dpt/depth/relative_inverse"]}
        pairs = [(m, rel_by_stamp[_stamp_key(m.header)]) for _, m in probe.messages["/dpt/depth"]
                 if _stamp_key(m.header) in rel_by_stamp]
        assert pairs, "no depth image with its relative-inverse twin received"
        depth_msg, rel = pairs[-1]
        x = output_image_to_array(rel).astype(np.float64)
        np.testing.assert_allclose(output_image_to_array(depth_msg), 1.0 / (0.3 * x + 0.2), rtol=1e-3)
    finally:
        stop_process(camera)
        stop_process(node)
        if probe is not None:
            probe.close()
