"""The set-up script is idempotent and names what is missing; the ROS-free part pip-installs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SETUP = REPO_ROOT / "scripts" / "setup.sh"


def _run_setup(env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif("VIRTUAL_ENV" not in os.environ, reason="needs the venv made by scripts/setup.sh")
def test_second_setup_run_is_a_no_op_on_the_venv():
    env = dict(os.environ, DPT_VENV=os.environ["VIRTUAL_ENV"], DPT_SKIP_BUILD="1")
    proc = _run_setup(env)
    assert proc.returncode == 0, proc.stderr
    assert "venv up to date" in proc.stderr
    assert "installing" not in proc.stderr


def test_missing_system_tool_is_named_with_its_install_command(tmp_path):
    # A PATH holding everything setup needs except cmake.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "make", "gcc", "g++", "bash", "cat", "sha256sum", "cut", "dirname", "grep"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "DPT_VENV": str(tmp_path / "venv")}
    proc = _run_setup(env, timeout=60)
    assert proc.returncode != 0
    assert "'cmake' not found" in proc.stderr
    assert "apt-get install -y cmake" in proc.stderr


def test_damaged_venv_gets_a_message_saying_what_to_delete(tmp_path):
    broken = tmp_path / "venv"
    (broken / "lib").mkdir(parents=True)  # e.g. an interrupted `python -m venv`
    env = dict(os.environ, DPT_VENV=str(broken), HOME=str(tmp_path))
    proc = _run_setup(env, timeout=60)
    assert proc.returncode != 0
    assert f"rm -rf '{broken}'" in proc.stderr


def test_venv_inside_the_source_tree_is_refused(tmp_path):
    env = dict(os.environ, DPT_VENV=str(REPO_ROOT / ".venv"), HOME=str(tmp_path))
    proc = _run_setup(env, timeout=60)
    assert proc.returncode != 0
    assert "inside the source tree" in proc.stderr
    assert not (REPO_ROOT / ".venv").exists()


def test_ros_free_part_installs_with_plain_pip(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(
        "build", "install", "log", ".git", "__pycache__", "outputs", "runs", "*.egg-info"))
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    installed = target / "dpt_perception"
    assert (installed / "model").is_dir() and (installed / "training").is_dir()
    assert not (installed / "ros").exists(), "the ROS node is not part of the pip (training machine) install"
    code = ("import sys; import dpt_perception.model, dpt_perception.inference, dpt_perception.training; "
            "assert 'rclpy' not in sys.modules, 'ROS-free modules imported rclpy'; "
            "print(dpt_perception.model.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(target)
