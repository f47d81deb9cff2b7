"""Shared pytest fixtures.

The source tree goes first on sys.path so tests exercise the working copy; the package's
`__init__` extends `__path__` so the generated `dpt_perception.msg` still imports from the colcon
install tree (scripts/env.sh puts it on PYTHONPATH).
"""
import os
import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAS_RCLPY = _has_module("rclpy")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def ros_env(tmp_path, monkeypatch):
    """Environment for a child ROS process: a random domain id unique to this test, the
    package's Fast DDS profile, the source tree first on PYTHONPATH, logs under tmp_path. The DDS
    variables also apply to this process for the test's duration, so an in-process probe joins
    the children's domain with the same transport settings."""
    if not HAS_RCLPY:
        pytest.skip("rclpy is not installed (run scripts/setup.sh)")
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.Random().randint(1, 101))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO_ROOT / "config" / "fastdds_images.xml")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["ROS_LOG_DIR"] = str(tmp_path / "ros_logs")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash in a node process prints its Python stack
    # precision/backend "auto" run the reference engine: node outputs do not depend on the CPU
    # (test_ros_latency_budget.py unsets it to run the measured choice).
    env["DPT_PERCEPTION_ENGINE_CANDIDATES"] = "eager/fp32"
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        monkeypatch.setenv(key, env[key])
    return env


def node_start_up_problems(
    cases: dict, env: dict, node_prefix: str, common=(), timeout: float = 100.0
) -> list[str]:
    """Start one `dpt_node` process per case at once and say what is wrong with how each ended.

    `cases` maps a name to (params, words): `name:=value` strings passed with `-p` after `common`,
    and the words stderr must contain. Each process must exit 1 with "dpt_node failed to start"
    (once) and its words on stderr and no traceback, within one `timeout` shared by all: a node still
    running then has accepted the bad input (it is killed). Returns one text per problem."""
    import subprocess
    import time

    procs = {}
    for name, (params, _) in cases.items():
        args = [sys.executable, "-m", "dpt_perception.ros.node", "--ros-args"]
        args += ["-r", f"__node:={node_prefix}{name}"]
        for p in (*common, *params):
            args += ["-p", p]
        procs[name] = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    stderrs, started = {}, set()
    try:
        for name, proc in procs.items():
            try:
                stderrs[name] = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                stderrs[name] = proc.communicate()[1]
                started.add(name)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    problems = []
    for name, (_, words) in cases.items():
        stderr = stderrs[name].decode(errors="replace")
        tail = stderr[-1500:]
        if name in started or procs[name].returncode != 1:
            problems.append(f"{name}: did not fail start-up (exit {procs[name].returncode})\n{tail}")
        elif "dpt_node failed to start" not in stderr or "Traceback" in stderr:
            problems.append(f"{name}: no clean start-up failure message\n{tail}")
        elif (times := stderr.count("dpt_node failed to start")) != 1:
            problems.append(f"{name}: the failure is printed {times} times\n{tail}")
        else:
            missing = [w for w in words if w not in stderr]
            if missing:
                problems.append(f"{name}: message does not name {missing}\n{tail}")
    return problems


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (restored after): numerics and timings that do not depend
    on the machine's core count, and no oversubscription next to DDS child processes."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
