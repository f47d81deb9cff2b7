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
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        monkeypatch.setenv(key, env[key])
    return env
