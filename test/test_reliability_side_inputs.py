"""Side inputs and side outputs over real DDS into a dpt_node process.

- A bad sparse-depth message in fit mode (wrong encoding, data shorter than its size) degrades only
  the fit: the last good scale/shift stays, depth, labels and points keep flowing and equal what
  that fit gives, frames count as processed, and the reason is logged once per message, throttled.
- `depth/camera_info` is published when it is the only output subscribed (it describes the depth
  image, so the depth is computed for it); a CameraInfo with an ROI gets K reduced like
  image_geometry does, one whose ROI cannot be used (do_rectify) gives no depth/camera_info and a
  reason, frames are still processed.
"""

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.image_conversion import array_to_image, output_image_to_array  # noqa: E402

from helpers.ros_session import BEST_EFFORT, ProbeCamera, RosSession, camera_info  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
H, W = 48, 64


class _Session(RosSession):
    """A node process named `name`, and this process as its camera (`camera`: image + CameraInfo
    calibrated at twice the image size, same stamps) and probe of `outputs`."""

    def __init__(self, ros_env, tmp_path, name, outputs, **params):
        torch.manual_seed(0)
        save_model(DPT(DPTConfig.tiny(num_classes=3, net_size=[64, 64])).eval(), tmp_path / "tiny")
        super().__init__(ros_env, tmp_path, probe_name=f"{name}_probe")
        self.name, self.outputs = name, outputs
        self.probe.subscribe("/diagnostics", DiagnosticArray, 10)
        for topic, msg_type in outputs.items():
            self.probe.subscribe(topic, msg_type, BEST_EFFORT)
        self.node = self.start_node(
            name, weights=tmp_path / "tiny.safetensors", net_size=[64, 64], diagnostics_period=0.3, **params
        )
        self.camera = ProbeCamera(self, H, W, camera_info(2 * H, 2 * W, 120.0, 110.0, 63.5, 47.5))

    def diag(self):
        return self.status(f"{self.name}:")

    def wait_ready(self):
        self.camera.wait_until_served(self.diag)

    def stream(self, seconds, sparse=None):
        return self.camera.stream(seconds, self.outputs, sparse)


def _fitted_depth(relative):
    return 1.0 / (0.3 * relative + 0.2)


def test_bad_sparse_depth_keeps_the_last_fit_and_every_output_flowing(ros_env, tmp_path):
    outputs = {
        "/dpt/depth": Image,
        "/dpt/depth/relative_inverse": Image,
        "/dpt/labels": Image,
        "/dpt/points": PointCloud2,
    }
    with _Session(
        ros_env, tmp_path, "sparse_node", outputs,
        sparse_depth_topic="camera/sparse_depth", sparse_depth_max_age=30.0,
    ) as s:
        s.wait_ready()
        relative_out = s.probe.spin_until(lambda: s.stream(0.5)["/dpt/depth/relative_inverse"] > 0, 60.0)
        assert relative_out, s.log()[-3000:]
        # 1. Good sparse depth consistent with 1/z = 0.3 x + 0.2 (from the node's own relative
        # output; every frame is the same image): depth appears, fitted.
        relative = output_image_to_array(s.probe.latest("/dpt/depth/relative_inverse")).astype(np.float64)
        rng = np.random.default_rng(0)
        good = np.where(rng.random(relative.shape) < 0.05, _fitted_depth(relative), np.nan).astype(np.float32)
        def good_sparse(header):
            return array_to_image(good, "32FC1", header)

        assert s.probe.spin_until(lambda: s.stream(0.5, good_sparse)["/dpt/depth"] > 0, 60.0), (
            s.diag(), s.log()[-3000:]
        )

        def wrong_encoding(header):
            return array_to_image(np.zeros((H, W, 3), np.uint8), "rgb8", header)

        def short_data(header):
            msg = array_to_image(good, "32FC1", header)
            msg.data = msg.data[: len(msg.data) // 3]
            return msg

        # 2. Bad sparse depth, new messages every frame: every output keeps flowing, the depth is
        # still the last good fit, frames are processed, the reason is logged (throttled).
        for bad, reason in ((wrong_encoding, "sparse depth must be 32FC1"), (short_data, "need at least")):
            s.stream(0.5, bad)  # the bad message replaces the good one at the node
            s.probe.spin_for(0.7)
            processed = int(s.diag().get("frames processed", 0))
            started = time.monotonic()
            got = s.stream(4.0, bad)
            assert min(got.values()) >= 3, (got, s.log()[-3000:])
            depth = output_image_to_array(s.probe.latest("/dpt/depth")).astype(np.float64)
            np.testing.assert_allclose(depth, _fitted_depth(relative), rtol=1e-3)
            s.probe.spin_for(0.7)
            assert int(s.diag().get("frames processed", 0)) >= processed + 3, s.diag()
            text = s.log()
            lines = [ln for ln in text.splitlines() if "ignoring bad sparse depth" in ln and reason in ln]
            assert 1 <= len(lines) <= (time.monotonic() - started) / 5.0 + 2, (reason, lines, text[-3000:])
        text = s.log()
        assert "could not publish" not in text and "Traceback" not in text, text[-3000:]
        assert s.node.poll() is None


def test_depth_camera_info_alone_is_published(ros_env, tmp_path):
    outputs = {"/dpt/depth/camera_info": CameraInfo}
    with _Session(ros_env, tmp_path, "info_alone_node", outputs, depth_mode="fixed") as s:
        s.wait_ready()
        got = s.stream(5.0)
        assert got["/dpt/depth/camera_info"] >= 3, (got, s.diag(), s.log()[-3000:])
        info = s.probe.latest("/dpt/depth/camera_info")
        assert (info.height, info.width) == (H, W)  # the depth image's size
        np.testing.assert_allclose(info.k, [60.0, 0, 31.75, 0, 55.0, 23.75, 0, 0, 1])  # K of 2x size / 2
        assert 1 <= info.header.stamp.sec <= s.camera.stamp and info.header.frame_id == "cam"

        # A camera sending the ROI at (32, 16) of its 128x96 calibration: K reduced as image_geometry
        # does (cx - 32, cy - 16), not scaled from 128x96.
        roi = s.camera.info.roi
        roi.x_offset, roi.y_offset, roi.width, roi.height = 32, 16, W, H
        s.stream(1.0)
        got = s.stream(3.0)
        assert got["/dpt/depth/camera_info"] >= 2, got
        reduced = s.probe.latest("/dpt/depth/camera_info").k
        np.testing.assert_allclose(reduced, [120, 0, 31.5, 0, 110, 31.5, 0, 0, 1])

        # The same ROI with do_rectify (rectified ROI not computed): no depth/camera_info, a reason
        # in the log, frames still processed.
        roi.do_rectify = True
        s.stream(1.0)
        processed = int(s.diag().get("frames processed", 0))
        got = s.stream(3.0)
        assert got["/dpt/depth/camera_info"] <= 1, got
        s.probe.spin_for(0.7)
        assert int(s.diag().get("frames processed", 0)) >= processed + 3, s.diag()
        text = s.log()
        assert "no depth/camera_info or points from this CameraInfo" in text, text[-2000:]
        assert "do_rectify" in text, text[-2000:]
        assert "Traceback" not in text and s.node.poll() is None
