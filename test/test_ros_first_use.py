"""First-use paths of the node, as a new user meets them, over real processes: the default start
without network or cached weights, `weights:=demo`, and Ctrl-C at any moment of start-up."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import node_start_up_problems

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

from dpt_perception.inference.weights import lookup  # noqa: E402
from dpt_perception.ros.parameters import _SPEC  # noqa: E402
from dpt_perception.ros.probe import installed_executable, param_args  # noqa: E402

from helpers.ros_session import RosSession  # noqa: E402

pytestmark = pytest.mark.integration


def _offline(env: dict, cache: Path) -> dict:
    """No network (every HTTPS request goes to a closed local port) and an empty weights cache."""
    env = dict(env, DPT_PERCEPTION_CACHE=str(cache), no_proxy="", NO_PROXY="")
    for key in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        env[key] = "http://127.0.0.1:9"
    return env


def test_offline_default_start_says_exactly_what_to_do(ros_env, tmp_path):
    cache = tmp_path / "empty_cache"
    defaults = _SPEC["weights"][0]  # the node's default weights: official checkpoint names (a pair)
    words = ["weights:=demo"]  # the bundled demo model, by name
    for default in defaults:  # every missing file, each with its download command and exact cache path
        words += [
            f"ros2 run dpt_perception download_weights {default}",
            str(cache / lookup(default).filename),
        ]
    problems = node_start_up_problems({"offline": ([], words)}, _offline(ros_env, cache), "dpt_first_use_")
    assert not problems, "\n".join(problems)
    assert not cache.exists() or list(cache.iterdir()) == [], "a failed download left files behind"


def test_weights_demo_starts_the_bundled_model_and_only_when_asked(ros_env, tmp_path):
    with RosSession(_offline(ros_env, tmp_path / "empty_cache"), tmp_path) as s:
        s.start_node("dpt_demo_weights", weights="demo")
        s.wait_for_log("active; cameras", 90.0)  # fails at once if the node exits
        text = s.log()
        assert "configured: weights demo" in text and "active; cameras" in text, text
    assert s.exit_codes["node"] == 0, s.log()


def _installed(executable: str) -> Path:
    try:
        return installed_executable(executable)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _runs_package_code(pid: int) -> bool:
    try:
        return "site-packages" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return True  # no /proc (or the process is gone): nothing to wait for


# executable -> its module: `python -m MODULE` (the documented source form) must behave the same.
_MODULES = {
    "dpt_node": "dpt_perception.ros.node",
    "dpt_lifecycle_node": "dpt_perception.ros.lifecycle_node",
    "dpt_camera_publisher": "dpt_perception.ros.camera_publisher",
    "dpt_demo": "dpt_perception.ros.demo",
}


@pytest.mark.parametrize("form", ["ros2 run", "python -m"])
@pytest.mark.parametrize("executable", list(_MODULES))
def test_ctrl_c_at_any_moment_of_start_up_exits_quietly(ros_env, tmp_path, executable, form):
    """SIGINT to the process group (what a terminal's Ctrl-C does) of `ros2 run dpt_perception EXE`
    (the installed executable) or `python -m MODULE` while Python imports torch/rclpy, during
    rclpy.init, while the model loads, and once serving. The processes start together, so the fixed
    delays land in different phases on any machine. The nodes exit 0 (a ROS node's normal stop);
    the demo, interrupted before its end, 130."""
    program = [str(_installed(executable))] if form == "ros2 run" else ["-m", _MODULES[executable]]
    delays = [0.05, 0.3, 0.8, 1.5, 2.5, 3.5, 5.0]
    procs = []
    for i in range(len(delays) + 1):
        args = [sys.executable, *program, "--ros-args", "-r", f"__node:=ctrl_c_{executable}_{i}"]
        if executable == "dpt_demo":
            args = [sys.executable, *program, "--out", str(tmp_path / f"demo_{i}"), "--frames", "1000"]
        elif executable != "dpt_camera_publisher":
            args += param_args(weights="demo")
        err = open(tmp_path / f"stderr_{i}.txt", "wb")  # noqa: SIM115 - closed below
        procs.append(
            (
                subprocess.Popen(
                    args, env=ros_env, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
                ),
                err,
            )
        )
    start = time.monotonic()
    ready = {
        "dpt_node": "active; cameras",
        "dpt_lifecycle_node": None,
        "dpt_camera_publisher": "publishing",
        "dpt_demo": "logs in",
    }
    expected = 130 if executable == "dpt_demo" else 0
    try:
        for (proc, _), delay in zip(procs, delays):
            time.sleep(max(0.0, start + delay - time.monotonic()))
            # Not before the interpreter runs our code: a SIGINT while CPython itself still starts
            # (its site import) is a fatal interpreter error no program can catch. Loading a
            # compiled module from site-packages (numpy, torch, rclpy) marks that point.
            wait_until = time.monotonic() + 30.0
            while not _runs_package_code(proc.pid) and time.monotonic() < wait_until and proc.poll() is None:
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGINT)
        last, _ = procs[-1]  # the last one once it serves (the lifecycle node: once its services run)
        deadline = time.monotonic() + 90.0
        marker = ready[executable]
        while time.monotonic() < deadline and last.poll() is None:
            text = (tmp_path / f"stderr_{len(delays)}.txt").read_text(errors="replace")
            if (marker in text) if marker else time.monotonic() - start > 12.0:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        os.killpg(last.pid, signal.SIGINT)
        codes = []
        for proc, _ in procs:
            try:
                codes.append(proc.wait(30))
            except subprocess.TimeoutExpired:
                codes.append("still running 30 s after Ctrl-C")
    finally:
        for proc, err in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            err.close()
    problems = []
    for i, code in enumerate(codes):
        stderr = (tmp_path / f"stderr_{i}.txt").read_text(errors="replace")
        when = f"after {delays[i]} s" if i < len(delays) else "once ready"
        if code != expected or "Traceback" in stderr or "failed to start" in stderr:
            problems.append(f"{form} {executable}, Ctrl-C {when}: exit {code}\n{stderr[-1500:]}")
    assert not problems, "\n".join(problems)


def test_logs_written_to_files_carry_no_colour_codes(ros_env, tmp_path):
    """The node logs the demo runner and the tests write (probe.start_process) stay plain text
    even where the shell exports RCUTILS_COLORIZED_OUTPUT=1 (rcutils then colours any stream)."""
    with RosSession(dict(ros_env, RCUTILS_COLORIZED_OUTPUT="1"), tmp_path) as s:
        s.start_camera(rate=5.0)
        s.wait_for_log("publishing", 60.0, log="camera")  # fails at once if the camera exits
    text = s.log("camera")
    assert "[INFO]" in text and "publishing" in text, text
    assert "\x1b[" not in text, repr(text[:300])
