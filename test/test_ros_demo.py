"""The demo runner finishes on its own and writes every promised file."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")


@pytest.mark.integration
def test_demo_writes_outputs_and_flags_random_weights(ros_env, tmp_path):
    out = tmp_path / "demo"
    env = dict(ros_env, DPT_PERCEPTION_CACHE=str(tmp_path / "empty_cache"))  # no cached real weights
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dpt_perception.ros.demo",
            "--out",
            str(out),
            "--frames",
            "3",
            "--timeout",
            "90",
            "--width",
            "160",
            "--height",
            "120",
            "--domain-id",
            ros_env["ROS_DOMAIN_ID"],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "camera.png",
        "depth_color.png",
        "relative_inverse.png",
        "labels_color.png",
        "points.ply",
        "latency.json",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "latency.json").read_text())
    assert summary["weights_meaningful"] is False
    assert "NOT MEANINGFUL" in result.stdout
    assert summary["latency_receive_minus_stamp"]["/dpt/depth/relative_inverse"]["messages"] >= 3
    assert summary["node_diagnostics"]["device"] == "cpu"
