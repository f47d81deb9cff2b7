"""Bounded runs of the reliability stress scripts over real DDS (the full runs and their figures
are in docs/reliability.md):

- bench/stress_bad_messages.py with 2000 malformed messages into two dpt_node processes: every
  frame accounted for, no error escaping the message checks, throttled warnings, the good frame
  afterwards comes out right, the nodes stay up;
- bench/stress_load.py with 4 cameras for 10 s into one node: memory growth <= 50 MiB after
  warm-up, counters add up, drops reported on /diagnostics, output age does not grow.
"""

import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("torch")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(repo_root, ros_env, script, *args, timeout=400):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / script), *args],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(proc.stdout)
    return proc


def test_bad_message_storm_over_dds(repo_root, ros_env):
    proc = _run(repo_root, ros_env, "stress_bad_messages.py", "--messages", "2000", "--rate", "300")
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("PASS"), (
        proc.stdout[-4000:] + proc.stderr[-3000:]
    )


def test_four_cameras_into_one_node_bounded(repo_root, ros_env):
    proc = _run(
        repo_root,
        ros_env,
        "stress_load.py",
        "--cameras",
        "4",
        "--rate",
        "10",
        "--width",
        "320",
        "--height",
        "240",
        "--seconds",
        "8",
        "--warmup",
        "4",
        "--no-age-check",
    )
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("PASS"), (
        proc.stdout[-4000:] + proc.stderr[-3000:]
    )


@pytest.mark.parametrize("script", ["stress_bad_messages.py", "stress_load.py"])
def test_stress_scripts_document_their_options(repo_root, script):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "usage:" in proc.stdout and "ROS_DOMAIN_ID" in proc.stdout, proc.stdout
