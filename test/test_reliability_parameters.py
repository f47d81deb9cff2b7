"""Parameters that come from users (paths, topic names, sizes, numbers): a bad value stops
`dpt_node` at start-up with exit status 1 and one clear line on stderr naming the parameter and the
value, never a traceback; the same values sent at runtime are refused with a reason.
"""

import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.parameters import validate_value  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("params")
    weights, _ = save_model(DPT(DPTConfig.tiny(num_classes=3, net_size=[64, 64])).eval(), folder / "tiny")
    return weights


def _cases(tmp_path):
    """One node process per kind of mistake (the full list of bad values is checked on
    `validate_value` below, which start-up uses too)."""
    not_a_checkpoint = tmp_path / "just_a_folder"
    not_a_checkpoint.mkdir()
    text_file = tmp_path / "notes.safetensors"
    text_file.write_text("these are not weights")
    return {
        "image_topic": (["image_topic:=bad topic"], ["image_topic", "bad topic"]),
        "output_ns": (["output_namespace:=/bad//ns"], ["output_namespace", "/bad//ns"]),
        "camera_ns": (["cameras:=['/ok', 'bad name!']"], ["cameras", "bad name!"]),
        "weights_dir": ([f"weights:={not_a_checkpoint}"], [str(not_a_checkpoint)]),
        "weights_text": ([f"weights:={text_file}"], [str(text_file)]),
        "net_size_big": (["net_size:=[64, 100000]"], ["net_size", "100000"]),
        "depth_scale_nan": (["depth_mode:=fixed", "depth_scale:=.nan"], ["depth_scale", "nan"]),
        "diag_period": (["diagnostics_period:=0.0"], ["diagnostics_period", "0.05", "60.0"]),
    }


@pytest.mark.slow
def test_bad_parameters_stop_start_up_with_a_clear_message(ros_env, tiny_weights, tmp_path):
    cases = _cases(tmp_path)
    procs = {}
    for name, (params, _) in cases.items():
        args = [
            sys.executable,
            "-m",
            "dpt_perception.ros.node",
            "--ros-args",
            "-r",
            f"__node:=p_{name}",
            "-p",
            f"weights:={tiny_weights}",
            "-p",
            "net_size:=[64, 64]",
        ]
        for p in params:
            args += ["-p", p]
        procs[name] = subprocess.Popen(args, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # One deadline for all: a node still running then has accepted a bad value (and is killed).
    deadline = time.monotonic() + 100.0
    outputs, started = {}, set()
    try:
        for name, proc in procs.items():
            try:
                outputs[name] = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs[name] = proc.communicate()
                started.add(name)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    problems = []
    for name, (_, words) in cases.items():
        stderr = outputs[name][1].decode(errors="replace")
        tail = stderr[-1500:]
        if name in started or procs[name].returncode != 1:
            problems.append(f"{name}: started with a bad value (exit {procs[name].returncode})\n{tail}")
        elif "dpt_node failed to start" not in stderr or "Traceback" in stderr:
            problems.append(f"{name}: no clean start-up failure message\n{tail}")
        else:
            missing = [w for w in words if w not in stderr]
            if missing:
                problems.append(f"{name}: message does not name {missing}\n{tail}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("image_topic", "bad topic"),
        ("image_topic", ""),
        ("camera_info_topic", "cam/{info"),
        ("camera_info_topic", "/a/b/"),
        ("sparse_depth_topic", "x y"),
        ("output_namespace", "/bad//ns"),
        ("output_namespace", "dpt out"),
        ("cameras", ["/ok", "bad name!"]),
        ("cameras", ["/a//b"]),
        ("cameras", ["/front", "/front"]),
        ("image_transport", "theora"),
        ("weights", ""),
        ("net_size", [64]),
        ("net_size", [64, 100]),
        ("net_size", [0, 64]),
        ("net_size", [64, 8192]),
        ("depth_scale", 0.0),
        ("depth_scale", float("nan")),
        ("depth_scale", float("inf")),
        ("depth_shift", float("nan")),
        ("depth_shift", float("-inf")),
        ("points_color", "rainbow"),
    ],
)
def test_bad_values_are_refused_with_a_reason_naming_the_parameter(name, value):
    reason = validate_value(name, value)
    assert reason is not None, f"{name}={value!r} accepted"
    assert name in reason


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("image_topic", "camera/image_raw"),
        ("image_topic", "/cam/image"),
        ("camera_info_topic", "~/camera_info"),
        ("sparse_depth_topic", ""),
        ("output_namespace", "dpt"),
        ("output_namespace", ""),
        ("cameras", [""]),
        ("cameras", ["/front", "rear"]),
        ("net_size", [64, 96]),
        ("net_size", [0, 0]),
        ("depth_scale", 2.5),
        ("depth_shift", -0.1),
        ("points_color", "labels"),
    ],
)
def test_good_runtime_values_are_accepted(name, value):
    assert validate_value(name, value) is None
