"""bench/bench_node_latency.py end to end with a tiny frame count: both installed nodes start,
answer every frame, and the script prints both rows, the ratio and the engine each node logged.
No timing is asserted (a shared machine's latencies are not a test)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

from dpt_perception.ros.probe import installed_executable  # noqa: E402

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_node_latency.py"


def test_installed_executable_names_the_fix_when_missing():
    with pytest.raises(FileNotFoundError, match="scripts/setup.sh"):
        installed_executable("no_such_executable")


def test_bench_prints_both_runs_and_their_ratio(ros_env):
    try:
        installed_executable("dpt_node")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    proc = subprocess.run([sys.executable, str(BENCH), "--frames", "3", "--warmup", "1", "--width", "160",
                           "--height", "120", "--startup-timeout", "120"],
                          env=ros_env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for row in ("default (auto)", "eager fp32"):
        line = rf"^{re.escape(row)} +p50 +[\d.]+ ms +p95 +[\d.]+ ms .*\(3 frames\)$"
        assert re.search(line, out, re.M), out
    assert re.search(r"^ratio default / eager fp32: p50 [\d.]+x, p95 [\d.]+x$", out, re.M), out
    # each node's "configured:" line, the eager one pinned to eager/fp32 (auto may pick anything)
    configured = re.findall(r"node log: configured: weights demo .* on cpu (\S+),", out)
    assert len(configured) == 2 and configured[1] == "eager/fp32", out
    assert out.startswith("CPU: "), out
