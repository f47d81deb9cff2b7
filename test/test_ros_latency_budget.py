"""Over DDS: `max_latency_ms` moves the node's net_size (reported on /diagnostics) and an explicit
net_size wins; `precision`/`backend` auto (the defaults) log and report the engine they chose."""
import re

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dpt_perception.inference.autotune import CANDIDATES_ENV  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.model.testing import tiny_model  # noqa: E402

from helpers.ros_session import RosSession  # noqa: E402

pytestmark = pytest.mark.integration


def test_latency_budget_and_auto_engine_over_dds(ros_env, tmp_path):
    ros_env.pop(CANDIDATES_ENV, None)  # the real auto choice for this machine
    ros_env["DPT_PERCEPTION_CACHE"] = str(tmp_path / "cache")
    weights, _ = save_model(tiny_model(seed=0, net_size=[128, 160]), tmp_path / "tiny")
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe

        def wait_for(condition, what):
            s.wait_for(lambda: condition(s.camera_status()), 90.0, what)
            probe.messages["/diagnostics"].clear()  # the next check sees only newer statuses

        def set_one(name, value):
            results = s.set_parameters("dpt_node", **{name: value})
            assert results[0].successful, results[0].reason

        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        s.start_node(weights=weights, depth_mode="fixed", max_latency_ms=0.001, diagnostics_period=0.3)
        s.start_camera(width=160, height=128, rate=15.0, distinct_frames=1, encoding="rgb8")
        probe.subscribe("/dpt/depth/relative_inverse", Image, 10)  # outputs nobody wants are not computed
        # an impossible budget: down to the smallest size of the ladder
        wait_for(lambda d: d.get("net_size (HxW)") == "32x32", "shrink to 32x32")
        set_one("max_latency_ms", 1.0e5)  # plenty: back up to the model's own size
        wait_for(lambda d: d.get("net_size (HxW)") == "128x160"
                 and "100000 ms" in d.get("latency budget", ""), "grow back to 128x160")
        set_one("max_latency_ms", 0.001)
        set_one("net_size", [64, 96])  # explicit wins: the budget only reports
        wait_for(lambda d: d.get("net_size (HxW)") == "64x96"
                 and "explicit net_size wins" in d.get("latency budget", ""), "explicit net_size")
        probe.spin_for(1.5)
        assert s.camera_status().get("net_size (HxW)") == "64x96", s.camera_status()
        engine = s.camera_status().get("engine", "")
    assert re.fullmatch(r"eager/(fp32|bf16) \(auto\)", engine), engine
    text = s.log()
    assert re.search(r"engine eager/(fp32|bf16) \((the only candidate|measured)", text), text[-3000:]
    assert "latency budget 0.001 ms: net_size now [32, 32]" in text
