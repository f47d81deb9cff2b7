"""CameraInfo missing, late, of another size, or unusable, over real DDS into a dpt_node process.

Depth and labels must keep flowing in every phase; the point cloud uses the intrinsics scaled to the
image size when the CameraInfo describes another resolution, and is skipped with a throttled
warning saying why when there is no CameraInfo or it has no usable focal lengths. Skipping the
cloud is not a bad frame: the frame still counts as processed on /diagnostics.
"""

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.image_conversion import output_image_to_array  # noqa: E402
from dpt_perception.ros.pointcloud2 import cloud_to_arrays  # noqa: E402

from helpers.ros_session import BEST_EFFORT, ProbeCamera, RosSession, camera_info  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
H, W = 48, 64


def test_camera_info_missing_late_resized_and_unusable(ros_env, tmp_path):
    torch.manual_seed(0)
    save_model(DPT(DPTConfig.tiny(num_classes=3, net_size=[64, 64])).eval(), tmp_path / "tiny")
    with RosSession(ros_env, tmp_path, probe_name="info_probe") as s:
        probe = s.probe

        def diag():
            return s.status("info_node:")

        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        outputs = {"/dpt/depth": Image, "/dpt/labels": Image, "/dpt/points": PointCloud2}
        for topic, msg_type in outputs.items():
            probe.subscribe(topic, msg_type, BEST_EFFORT)
        node = s.start_node(
            "info_node", weights=tmp_path / "tiny.safetensors", net_size=[64, 64], depth_mode="fixed",
            diagnostics_period=0.3,
        )
        camera = ProbeCamera(s, H, W)  # no CameraInfo until phase 2

        def stream(seconds):
            return camera.stream(seconds, outputs)

        camera.wait_until_served(diag)

        # 1. No CameraInfo at all: depth and labels flow, no cloud, a throttled warning says why.
        started = time.monotonic()
        got = stream(6.0)
        assert got["/dpt/depth"] >= 5 and got["/dpt/labels"] >= 5 and got["/dpt/points"] == 0, got
        text = s.log()
        warnings = text.count("no CameraInfo received yet")
        assert 1 <= warnings <= (time.monotonic() - started) / 5.0 + 2, warnings

        # 2. CameraInfo arrives late, calibrated at twice the image size: the cloud uses K / 2.
        fx, fy, cx, cy = 120.0, 110.0, 63.5, 47.5
        camera.info = camera_info(2 * H, 2 * W, fx, fy, cx, cy)
        got = stream(4.0)
        assert got["/dpt/points"] >= 3 and got["/dpt/depth"] >= 3, got
        cloud, depth_msg = probe.latest("/dpt/points"), None
        for _, m in reversed(probe.messages["/dpt/depth"]):
            if m.header.stamp.sec == cloud.header.stamp.sec:
                depth_msg = m
                break
        assert depth_msg is not None
        depth = output_image_to_array(depth_msg).astype(np.float64)
        z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)  # REP 117: +Inf "too far" = no point
        assert np.isfinite(z).any()
        fields = cloud_to_arrays(cloud)
        v, u = np.mgrid[0:H, 0:W]
        np.testing.assert_allclose(fields["z"], z, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(
            fields["x"], (u - cx / 2) / (fx / 2) * z, rtol=1e-4, atol=1e-6, equal_nan=True
        )
        np.testing.assert_allclose(
            fields["y"], (v - cy / 2) / (fy / 2) * z, rtol=1e-4, atol=1e-6, equal_nan=True
        )

        # 3./4. Unusable CameraInfo (uncalibrated zeros, then NaN focal length): still depth and
        # labels, and frames still count as processed; the cloud is skipped with a reason.
        uncalibrated = camera_info(H, W, 0.0, 0.0, 0.0, 0.0)
        for bad in (uncalibrated, camera_info(H, W, float("nan"), 100.0, 32.0, 24.0)):
            probe.spin_for(0.7)
            before = int(diag().get("frames processed", 0))
            camera.info = bad
            stream(1.0)  # let the bad CameraInfo replace the good one
            points_before = probe.count("/dpt/points")
            got = stream(4.0)
            assert got["/dpt/depth"] >= 3 and got["/dpt/labels"] >= 3, got
            assert probe.count("/dpt/points") - points_before <= 1, "a cloud from unusable intrinsics"
            probe.spin_for(0.7)
            assert int(diag().get("frames processed", 0)) >= before + 3, diag()
        text = s.log()
        assert "Traceback" not in text and node.poll() is None
        assert "focal" in text.lower() or "calibrat" in text.lower(), text[-3000:]
