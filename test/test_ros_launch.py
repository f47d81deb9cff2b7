"""The ROS assets: config/dpt.yaml, rviz/dpt.rviz and launch/dpt.launch.py.

The launch tests that run the file need `launch` and `launch_ros` (a ROS 2 distribution install)
and the package built with colcon; they are skipped cleanly where those are missing (the pip-only
environment). The asset checks, and the launch file's actions run with stand-in `launch` modules,
run everywhere.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _spec():
    pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
    from dpt_perception.ros.parameters import _SPEC

    return _SPEC


def test_config_file_sets_every_parameter_to_its_default_with_a_comment():
    spec = _spec()
    text = (REPO / "config" / "dpt.yaml").read_text()
    params = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert set(params) == set(spec), f"missing: {set(spec) - set(params)}, unknown: {set(params) - set(spec)}"
    for name, (default, *_rest) in spec.items():
        assert params[name] == default, (
            f"{name}: config/dpt.yaml has {params[name]!r}, node default {default!r}"
        )
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    ") and not line.strip().startswith("#") and ":" in line:
            assert lines[i - 1].strip().startswith("#"), f"parameter line without a comment above: {line!r}"


def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load((REPO / "rviz" / "dpt.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"]: d for d in displays if "Topic" in d}
    assert {"/dpt/depth", "/dpt/labels/color", "/dpt/points"} <= set(topics)
    clouds = [d for d in displays if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert {d["Color Transformer"] for d in clouds} == {"RGB8", "Intensity"}
    assert all(d["Topic"]["Reliability Policy"] == "Best Effort" for d in clouds)  # points use SensorDataQoS
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_optical_frame"


def test_launch_file_is_valid_python_with_the_documented_arguments():
    source = (REPO / "launch" / "dpt.launch.py").read_text()
    compile(source, "dpt.launch.py", "exec")
    for name in (
        "image_topic",
        "camera_info_topic",
        "weights",
        "model",
        "device",
        "precision",
        "net_size",
        "params_file",
        "namespace",
        "rviz",
        "lifecycle",
        "FASTDDS_DEFAULT_PROFILES_FILE",
    ):
        assert f'"{name}"' in source, name


_LAUNCHER = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]]))
sys.exit(service.run())
"""


def _installed_launch_file() -> Path:
    """The installed launch file, where `launch` and `launch_ros` can run it (else skip)."""
    # (`launch.launch_service`: the source tree's own launch/ folder imports as a namespace `launch`)
    pytest.importorskip("launch.launch_service", reason="launch is not installed (ROS 2 distribution only)")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 distribution only)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory("dpt_perception"))
    except PackageNotFoundError:
        pytest.skip("dpt_perception is not installed in the ament index (colcon build + source install)")
    launch_file = share / "launch" / "dpt.launch.py"
    if not launch_file.is_file():
        pytest.skip(f"{launch_file} not installed; rebuild with colcon")
    return launch_file


@pytest.mark.integration
def test_a_node_that_fails_to_start_ends_the_launch_with_one_message(ros_env, tmp_path):
    """Launched with weights that do not exist (and the demo camera, which must be stopped too),
    written to a file: the launch ends by itself with a non-zero exit status (what `ros2 launch`
    returns: a script or CI step sees the failure), the reason is there once, with no colour codes."""
    launch_file = _installed_launch_file()
    missing = tmp_path / "missing.safetensors"
    with open(tmp_path / "launch.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(launch_file), f"weights:={missing}",
                                 "demo_camera:=true"], env=ros_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
            code = None
    text = (tmp_path / "launch.log").read_text(errors="replace")
    assert code is not None, f"the launch kept running after the node failed:\n{text[-3000:]}"
    assert code != 0, f"the launch exited 0 although dpt_node failed to start:\n{text[-3000:]}"
    assert "dpt_node exited with status 1" in text, text[-3000:]
    assert text.count("dpt_node failed to start") == 1, text[-3000:]
    assert str(missing) in text
    assert "\x1b[" not in text, "ANSI colour codes in a log written to a file"


@pytest.mark.integration
def test_launch_file_starts_a_serving_node(ros_env, tmp_path):
    launch_file = _installed_launch_file()
    import torch
    from sensor_msgs.msg import Image

    from dpt_perception.model import DPT, DPTConfig
    from dpt_perception.model.checkpoints import save_model
    from dpt_perception.ros.probe import OutputProbe

    torch.manual_seed(0)
    save_model(DPT(DPTConfig.tiny(net_size=[64, 64])).eval(), tmp_path / "tiny")
    args = [
        f"weights:={tmp_path / 'tiny.safetensors'}",
        "net_size:=[64, 64]",
        "demo_camera:=true",
        "namespace:=launched",
    ]
    log = open(tmp_path / "launch.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(launch_file), *args],
        env=ros_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    probe = None
    try:
        probe = OutputProbe(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
        from rclpy.qos import qos_profile_sensor_data

        probe.subscribe("/launched/dpt/depth", Image, qos_profile_sensor_data)
        ok = probe.spin_until(lambda: probe.count("/launched/dpt/depth") >= 2, 90.0)
        assert ok, (tmp_path / "launch.log").read_text(errors="replace")[-3000:]
        assert probe.latest("/launched/dpt/depth").encoding == "32FC1"
    finally:
        if probe is not None:
            probe.close()
        if proc.poll() is None:
            os.killpg(proc.pid, 2)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)
        log.close()
    # Ctrl-C of a serving launch is a normal stop: the node exits 0, and so does the launch.
    assert proc.returncode == 0, (tmp_path / "launch.log").read_text(errors="replace")[-3000:]


# ---- the launch file's actions, without `launch` installed ----------------------------------------
class _Recorded:
    """Stand-in for a launch action or substitution: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context[self.args[0]]


def _launch_actions(monkeypatch, stdout_is_tty: bool, **arguments):
    """Run the launch file's OpaqueFunction with stub `launch` / `launch_ros` modules; returns the
    Node actions' keyword arguments by executable."""
    import io
    import runpy
    import types

    modules = {name: types.ModuleType(name) for name in
               ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "SetEnvironmentVariable", "Shutdown"):
        setattr(modules["launch.actions"], name, type(name, (_Recorded,), {}))
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    modules["launch_ros.actions"].Node = type("Node", (_Recorded,), {})
    modules["launch"].LaunchDescription = type("LaunchDescription", (_Recorded,), {})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    pytest.importorskip("ament_index_python")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("dpt_perception")
    except PackageNotFoundError:
        pytest.skip("dpt_perception is not installed in the ament index (run scripts/setup.sh)")
    stdout = io.StringIO()
    stdout.isatty = lambda: stdout_is_tty
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.delenv("RCUTILS_COLORIZED_OUTPUT", raising=False)
    namespace = runpy.run_path(str(REPO / "launch" / "dpt.launch.py"))
    context = {name: default for name, (default, _) in namespace["ARGUMENTS"].items()}
    context.update(arguments)
    return {node.kwargs["executable"]: node.kwargs for node in namespace["_actions"](context)}


def test_launch_ends_when_the_node_exits_and_fails_when_it_failed(monkeypatch):
    """Exit 0: a Shutdown action. Non-zero (a start-up failure): an error raised into the launch,
    the only thing that makes `LaunchService.run`, hence `ros2 launch`, return non-zero."""
    import types

    for lifecycle in ("false", "true"):
        nodes = _launch_actions(monkeypatch, True, lifecycle=lifecycle)
        ((executable, node),) = nodes.items()
        on_exit = node["on_exit"]
        actions = on_exit(types.SimpleNamespace(returncode=0), None)
        assert [type(a).__name__ for a in actions] == ["Shutdown"], node
        for status in (1, -9):
            with pytest.raises(RuntimeError, match=f"{executable} exited with status {status}"):
                on_exit(types.SimpleNamespace(returncode=status), None)


def test_launch_demo_camera_publishes_where_the_node_listens(monkeypatch):
    nodes = _launch_actions(monkeypatch, True, demo_camera="true", image_topic="/cam/color/image_raw",
                            camera_info_topic="/cam/color/camera_info")
    camera = nodes["dpt_camera_publisher"]["parameters"][0]
    assert camera["image_topic"] == "/cam/color/image_raw"
    assert camera["camera_info_topic"] == "/cam/color/camera_info"
    assert nodes["dpt_node"]["parameters"][1]["image_topic"] == "/cam/color/image_raw"
    defaults = _launch_actions(monkeypatch, True, demo_camera="true")["dpt_camera_publisher"]["parameters"][0]
    assert "image_topic" not in defaults  # both keep their own (equal) defaults


def test_launch_colours_only_on_a_terminal(monkeypatch):
    on_tty = _launch_actions(monkeypatch, True, demo_camera="true")
    to_file = _launch_actions(monkeypatch, False, demo_camera="true")
    for executable in ("dpt_node", "dpt_camera_publisher"):
        assert on_tty[executable]["emulate_tty"] is True
        assert to_file[executable]["emulate_tty"] is False
        assert to_file[executable]["additional_env"]["RCUTILS_COLORIZED_OUTPUT"] == "0"
