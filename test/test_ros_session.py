"""The DDS tests' harness (helpers/ros_session.py) with real processes: a failing block still stops
and reaps every process and prints their logs; wait_for gives up as soon as a process dies, naming
it, instead of waiting out its timeout; parameters go out with the types `ros2 param set` uses."""

import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

from rcl_interfaces.msg import ParameterType  # noqa: E402

from helpers.ros_session import RosSession, parameter_msg  # noqa: E402

pytestmark = pytest.mark.integration


def test_a_failing_block_reaps_every_process_and_prints_their_logs(ros_env, tmp_path, capsys):
    with pytest.raises(RuntimeError, match="the test failed here"):
        with RosSession(ros_env, tmp_path) as s:
            s.start_camera(rate=5.0)
            s.start_camera("second", log="camera_second", rate=5.0)
            s.wait_for_log("publishing", 60.0, log="camera")
            s.wait_for_log("publishing", 60.0, log="camera_second")
            raise RuntimeError("the test failed here")
    assert all(proc.poll() is not None for proc in s.procs.values()), "a process left running"
    assert s.exit_codes == {"camera": 0, "camera_second": 0}, s.exit_codes  # Ctrl-C: clean exits
    assert s.probe is None, "probe left open"
    out = capsys.readouterr().out
    for name in ("camera", "camera_second"):
        assert f"----- {name}.log" in out, out[-2000:]
    assert out.count("publishing") >= 2, out[-2000:]


def test_wait_for_stops_as_soon_as_a_process_dies_and_names_it(ros_env, tmp_path):
    with RosSession(ros_env, tmp_path) as s:
        camera = s.start_camera(rate=5.0)
        s.wait_for_log("publishing", 60.0, log="camera")
        camera.kill()
        started = time.monotonic()
        with pytest.raises(AssertionError) as failure:
            s.wait_for(lambda: False, 60.0, "something that never comes")
        assert time.monotonic() - started < 10.0, "waited out the timeout although the camera died"
        message = str(failure.value)
        assert "something that never comes" in message and "camera.log exited with -9" in message, message
        assert "publishing" in message, message  # the tail of the dead process's log
    assert s.exit_codes == {"camera": -9}


def test_wait_for_without_a_dead_process_fails_after_its_timeout(ros_env, tmp_path):
    with RosSession(ros_env, tmp_path) as s:
        started = time.monotonic()
        with pytest.raises(AssertionError, match=r"nothing here: not within 0.5 s"):
            s.wait_for(lambda: False, 0.5, "nothing here")
        assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize(
    ("value", "field", "kind"),
    [
        ("demo", "string_value", ParameterType.PARAMETER_STRING),
        (2.0, "double_value", ParameterType.PARAMETER_DOUBLE),
        (3, "integer_value", ParameterType.PARAMETER_INTEGER),
        ([64, 96], "integer_array_value", ParameterType.PARAMETER_INTEGER_ARRAY),
        (["sky", "box"], "string_array_value", ParameterType.PARAMETER_STRING_ARRAY),
    ],
)
def test_parameters_carry_the_type_of_the_python_value(value, field, kind):
    msg = parameter_msg("p", value)
    assert msg.name == "p" and msg.value.type == kind
    got = getattr(msg.value, field)
    assert (list(got) if isinstance(value, list) else got) == value
