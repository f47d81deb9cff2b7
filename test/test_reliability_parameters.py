"""Parameters that come from users (paths, topic names, sizes, numbers): a bad value stops
`dpt_node` at start-up with exit status 1 and one clear line on stderr naming the parameter and the
value, never a traceback; the same values sent at runtime are refused with a reason.
"""

import dataclasses

import pytest

from conftest import node_start_up_problems

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.parameters import Settings, validate_value  # noqa: E402

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
        "depth_scale_huge": (
            ["depth_mode:=fixed", "depth_scale:=1e39"], ["depth_scale", "1e+39", "3.402823e+38"]
        ),
    }


@pytest.mark.slow
def test_bad_parameters_stop_start_up_with_a_clear_message(ros_env, tiny_weights, tmp_path):
    common = [f"weights:={tiny_weights}", "net_size:=[64, 64]"]
    problems = node_start_up_problems(_cases(tmp_path), ros_env, "p_", common=common, timeout=100.0)
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


FLOAT_PARAMETERS = [f.name for f in dataclasses.fields(Settings) if f.type in ("float", float)]


def test_there_are_float_parameters_to_check():
    assert {"depth_scale", "depth_shift", "max_depth", "sparse_depth_max_age"} <= set(FLOAT_PARAMETERS)


@pytest.mark.parametrize("name", FLOAT_PARAMETERS)
def test_every_float_parameter_is_refused_beyond_float32_with_the_range(name):
    """depth_scale = 1e39 was accepted and made every depth 0.0 m (1 / (1e39 * x) in float32)."""
    for value in (1e39, -1e39, 3.5e38, 1e300):
        reason = validate_value(name, value)
        assert reason is not None and name in reason and "3.402823e+38" in reason, (name, value, reason)
    assert "float32" not in (validate_value(name, 3.4e38) or "")  # still representable
