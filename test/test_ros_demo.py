"""The demo runner finishes on its own and writes every promised file."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")


@pytest.mark.integration
def test_demo_writes_outputs_with_the_bundled_demo_weights(ros_env, tmp_path):
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
    # no real weights cached: the bundled synthetic-scene model is used, and said so
    assert summary["weights_meaningful"] is True
    assert summary["weights"].endswith("dpt_demo_synthetic.safetensors")
    assert "bundled demo weights" in result.stdout
    assert "NOT MEANINGFUL" not in result.stdout
    assert summary["latency_receive_minus_stamp"]["/dpt/depth/relative_inverse"]["messages"] >= 3
    assert summary["node_diagnostics"]["device"] == "cpu"


def test_demo_falls_back_to_random_weights_and_says_so(tmp_path, monkeypatch):
    from dpt_perception.ros import demo

    monkeypatch.setenv("DPT_PERCEPTION_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(demo, "DEMO_WEIGHTS", tmp_path / "missing.safetensors")
    weights, meaningful, why = demo.choose_weights(None, tmp_path)
    assert meaningful is False
    assert "RANDOMLY INITIALISED" in why
    assert weights.endswith(".safetensors") and (tmp_path / "weights").is_dir()
