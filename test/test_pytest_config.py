"""The project's pytest configuration keeps foreign pytest plugins out.

A sourced ROS 2 installation puts packages with `pytest11` entry points on PYTHONPATH
(launch_testing, launch_pytest, launch_testing_ros, ament_lint); with pytest 9 some of them fail
while pytest loads them, before a single test runs. Here an installed-looking plugin named
`launch_testing` that raises on import stands in for them, in a real pytest subprocess.
"""
import os
import subprocess
import sys

from conftest import REPO_ROOT

_PASSING_TEST = """
def test_runs(request):
    names = {name for name, _ in request.config.pluginmanager.list_name_plugin()}
    print("\\nPLUGINS:", sorted(names))
"""


def _fake_ros_plugin(site):
    """A distribution `launch_testing` whose pytest11 entry point raises when pytest loads it."""
    dist = site / "launch_testing-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: launch_testing\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\nlaunch_testing = fake_launch_testing_hooks\n")
    (site / "fake_launch_testing_hooks.py").write_text(
        "raise RuntimeError('FOREIGN PLUGIN LOADED: launch_testing is not for this project')\n"
    )


def _pytest(tmp_path, inifile):
    site = tmp_path / "site"
    if not site.exists():
        _fake_ros_plugin(site)
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "test_one.py").write_text(_PASSING_TEST)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(inifile), "--rootdir", str(tmp_path), "-s",
         "-p", "no:cacheprovider", str(tmp_path / "tests")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_broken_foreign_plugin_breaks_pytest_without_the_project_config(tmp_path):
    """The control: the fake plugin really is loaded (and fails) under a plain configuration."""
    plain = tmp_path / "plain.ini"
    plain.write_text("[pytest]\n")
    proc = _pytest(tmp_path, plain)
    assert proc.returncode != 0
    assert "FOREIGN PLUGIN LOADED" in proc.stdout + proc.stderr


def test_project_config_keeps_foreign_plugins_out(tmp_path):
    proc = _pytest(tmp_path, REPO_ROOT / "pyproject.toml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed" in out and "FOREIGN PLUGIN LOADED" not in out
    plugins = next(line for line in out.splitlines() if line.startswith("PLUGINS:"))
    assert "launch_testing" not in plugins
    # The one third-party plugin the suite uses is loaded on purpose (test_reliability_messages).
    assert "hypothesispytest" in plugins
