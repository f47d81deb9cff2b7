"""ROS_DISTRO picks the distribution of the set-up: its own venv, pins and build directories."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / "scripts"


def _fake_venv(path: Path, held: str | None = None) -> Path:
    """A real (pip-less) venv; `held` plants the dist-info that marks which ROS 2 it holds."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    if held:
        site = path / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        (site / "ros_rclpy-9.1.2.dist-info").mkdir(parents=True)
        if held == "jazzy":
            (site / "ros_jazzy_rclpy-7.1.6.dist-info").mkdir()
    return path


def _setup(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / "setup.sh")], env=env, capture_output=True, text=True,
                          timeout=120)


def test_unknown_distribution_is_refused_with_the_choices(tmp_path):
    env = dict(os.environ, ROS_DISTRO="humble", HOME=str(tmp_path), DPT_SKIP_BUILD="1")
    env.pop("DPT_VENV", None)
    proc = _setup(env)
    assert proc.returncode == 1
    assert "ROS_DISTRO=humble" in proc.stderr
    assert "ROS_DISTRO=kilted" in proc.stderr and "ROS_DISTRO=jazzy" in proc.stderr
    assert not (tmp_path / ".local").exists(), "nothing is created for an unknown distribution"


def test_a_venv_holding_the_other_distribution_is_never_installed_over(tmp_path):
    for held, wanted in (("kilted", "jazzy"), ("jazzy", "kilted")):
        venv = _fake_venv(tmp_path / f"venv-{held}", held)
        env = dict(os.environ, ROS_DISTRO=wanted, DPT_VENV=str(venv), HOME=str(tmp_path), DPT_SKIP_BUILD="1")
        proc = _setup(env)
        assert proc.returncode == 1, proc.stderr
        assert f"holds ROS 2 {held}, not {wanted}" in proc.stderr
        assert "installing" not in proc.stderr
        assert not (venv / ".dpt_setup_stamp").exists()


def test_env_sh_switches_distribution_without_leaving_the_first_on_the_paths(tmp_path):
    share = tmp_path / ".local" / "share" / "dpt_perception"
    kilted, jazzy = _fake_venv(share / "venv"), _fake_venv(share / "venv-jazzy")
    script = (f"source {SCRIPTS / 'env.sh'} && first=$AMENT_PREFIX_PATH && "
              f"export ROS_DISTRO=jazzy && source {SCRIPTS / 'env.sh'} && "
              'printf "%s\\n" "$first" "$ROS_DISTRO" "$VIRTUAL_ENV" "$PATH" '
              '"$AMENT_PREFIX_PATH" "${PYTHONPATH:-}"')
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, distro, virtual_env, path, ament, pythonpath = proc.stdout.splitlines()
    assert str(kilted) in first.split(":"), "the default distribution is Kilted"
    assert (distro, virtual_env) == ("jazzy", str(jazzy))
    assert str(jazzy) in ament.split(":")
    for var in (path, ament, pythonpath):
        assert str(kilted) + "/" not in var + "/" and str(kilted) + ":" not in var + ":", var
        assert str(REPO_ROOT / "install") + "/" not in var, "Kilted's colcon install is dropped"
    if (REPO_ROOT / "install-jazzy" / "setup.bash").exists():
        assert str(REPO_ROOT / "install-jazzy") in pythonpath


def test_env_sh_without_a_venv_says_how_to_make_it(tmp_path):
    script = f"export ROS_DISTRO=jazzy; source {SCRIPTS / 'env.sh'}; echo rc=$?"
    proc = subprocess.run(["bash", "-c", script], env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)
    assert "rc=1" in proc.stdout
    assert "ROS_DISTRO=jazzy bash scripts/setup.sh" in proc.stderr
