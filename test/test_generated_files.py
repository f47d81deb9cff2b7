"""The parameter spec (dpt_perception/ros/parameters.py `_SPEC`) is the one source of
config/dpt.yaml, the NODE_ARGUMENTS block of launch/dpt.launch.py and the parameter table of
docs/node.md: the files must be what `make generate` writes, a new spec entry must reach
all three, and the launch file must offer and convert exactly the spec's launch parameters."""

import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

from rcl_interfaces.msg import ParameterType  # noqa: E402

from dpt_perception.ros import generate, parameters  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_generated_files_are_up_to_date():
    stale = generate.stale(REPO)
    assert not stale, f"stale generated files {[str(p) for p in stale]}: run `make generate` and commit them"


def test_check_mode_reports_a_stale_file_and_writing_fixes_it(tmp_path, capsys):
    for path in generate.outputs(REPO):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text((REPO / path).read_text())
    config = tmp_path / generate.CONFIG
    config.write_text(config.read_text().replace("max_batch: 8", "max_batch: 9"))  # a hand edit
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale: config/dpt.yaml" in capsys.readouterr().out
    assert "max_batch: 9" in config.read_text()  # --check writes nothing
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0
    assert "max_batch: 8" in config.read_text()


def test_a_new_spec_entry_reaches_every_generated_file(monkeypatch):
    spec = dict(parameters._SPEC)
    spec["example_rate"] = (2.5, ParameterType.PARAMETER_DOUBLE, "An example | with <markup> *stars*.",
                            False, {"range": (0.5, 10.0), "group": "inputs", "launch": True})
    monkeypatch.setattr(generate, "_SPEC", spec)
    config = yaml.safe_load(generate.render_config())["/**"]["ros__parameters"]
    assert config["example_rate"] == 2.5
    assert "    # (runtime) An example | with <markup> *stars*. Range [0.5, 10.0].\n    example_rate: 2.5" \
        in generate.render_config()
    launch = {}
    exec(generate.render_launch_arguments(), launch)
    assert launch["NODE_ARGUMENTS"]["example_rate"] == ("double", "An example | with <markup> *stars*.")
    row = [r for r in generate.render_docs_table().splitlines() if r.startswith("| `example_rate`")]
    assert row == ["| `example_rate` *runtime* | `2.5` | An example \\| with \\<markup> \\*stars\\*. "
                   "Range [0.5, 10.0]. |"]


def test_an_entry_without_a_group_is_named(monkeypatch):
    spec = dict(parameters._SPEC, orphan=("", ParameterType.PARAMETER_STRING, "text", True, {}))
    monkeypatch.setattr(generate, "_SPEC", spec)
    with pytest.raises(ValueError, match="parameter 'orphan': its extra dict needs \"group\""):
        generate.render_config()


@pytest.mark.parametrize("value", ["", "dpt", "camera/image_raw", "with space", "a:b", "true", "1.5", "#x"])
def test_yaml_value_round_trips_strings(value):
    assert yaml.safe_load(f"k: {generate.yaml_value(value)}")["k"] == value
    assert yaml.safe_load(f"k: {generate.yaml_value([value, value])}")["k"] == [value, value]


class _Recorder:
    """Stands in for a launch action class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _load_launch_file(monkeypatch, tmp_path, values: dict):
    """Run launch/dpt.launch.py with stand-ins for launch / launch_ros (not installable here)."""
    share = tmp_path / "share"
    (share / "config").mkdir(parents=True)

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, _context):
            return values.get(self.name, "")

    stubs = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    stubs["launch"].LaunchDescription = _Recorder
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "SetEnvironmentVariable", "Shutdown"):
        setattr(stubs["launch.actions"], name, _Recorder)
    stubs["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    stubs["launch_ros.actions"].Node = _Recorder
    stubs["ament_index_python.packages"].get_package_share_directory = lambda _package: str(share)
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    return runpy.run_path(str(REPO / "launch" / "dpt.launch.py"))


def test_launch_file_offers_the_spec_launch_parameters_and_converts_them(monkeypatch, tmp_path):
    launch = _load_launch_file(monkeypatch, tmp_path, {"net_size": "[384, 512]", "weights": "w.safetensors",
                                                       "device": ""})
    wanted = {name: spec[2] for name, spec in parameters._SPEC.items() if spec[4].get("launch")}
    assert {n: d for n, (_default, d) in launch["ARGUMENTS"].items() if n in wanted} == wanted
    assert set(launch["ARGUMENTS"]) - set(wanted) == {"namespace", "params_file", "rviz", "fixed_frame",
                                                      "demo_camera", "lifecycle"}
    actions = launch["generate_launch_description"]().args[0]
    declared = {a.args[0]: a.kwargs["description"] for a in actions if "default_value" in a.kwargs}
    assert declared == {name: text for name, (_default, text) in launch["ARGUMENTS"].items()}
    (node,) = launch["_actions"](None)
    params_file, overrides = node.kwargs["parameters"]
    assert params_file.endswith("config/dpt.yaml")
    assert overrides == {"net_size": [384, 512], "weights": "w.safetensors"}  # empty arguments left out


@pytest.mark.parametrize("text", ["[384, 512.5]", "384", "[true, 1]", "'[384, 512]'"])
def test_launch_file_rejects_a_malformed_array_argument(monkeypatch, tmp_path, text):
    launch = _load_launch_file(monkeypatch, tmp_path, {"net_size": text})
    with pytest.raises(ValueError, match=r"net_size must look like '\[384, 512\]' \(integer array\)"):
        launch["_actions"](None)
