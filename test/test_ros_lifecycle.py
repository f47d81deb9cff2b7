"""dpt_lifecycle_node over real DDS: every managed transition through lifecycle_msgs services from
another process, what exists in each state, and a failed configure that keeps the node alive."""

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import save_model  # noqa: E402
from dpt_perception.ros.probe import OutputProbe  # noqa: E402

from helpers.ros_session import BEST_EFFORT, LIFECYCLE_NODE, RosSession  # noqa: E402

pytestmark = pytest.mark.integration
DPT_MSGS = pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")
NODE = "dpt_lc_test"


class Lifecycle:
    """Client side of a managed node's lifecycle services, spun by the probe."""

    def __init__(self, probe: OutputProbe, node_name: str):
        self.probe = probe
        self.get = probe.node.create_client(GetState, f"/{node_name}/get_state")
        self.change = probe.node.create_client(ChangeState, f"/{node_name}/change_state")
        ready = lambda: self.get.service_is_ready() and self.change.service_is_ready()  # noqa: E731
        assert probe.spin_until(ready, 30.0), "lifecycle services never appeared"

    def state(self) -> str:
        response = self.probe.call(self.get, GetState.Request())
        assert response is not None, "get_state got no answer"
        return response.current_state.label

    def transition(self, transition_id: int) -> bool:
        """Request a transition once and wait for its answer. A transition must not be sent twice,
        so a lost reply (see OutputProbe.call) is settled by the state: moved means it ran; still
        the same state means it failed or never arrived, and a failed one can be asked again."""
        request = ChangeState.Request(transition=Transition(id=transition_id))
        before = self.state()
        for _ in range(3):
            response = self.probe.call(self.change, request, timeout=20.0, resend_after=None)
            if response is not None:
                return response.success
            if self.state() != before:
                return True
        raise AssertionError(f"{self.change.srv_name}: no answer to transition {transition_id}")


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    save_model(DPT(DPTConfig.tiny(num_classes=4, net_size=[64, 64])).eval(), tmp_path / "tiny")
    return tmp_path / "tiny.safetensors"


def test_transitions_create_and_remove_what_each_state_owns(ros_env, tiny_weights, tmp_path):
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        node = s.start_node(NODE, module=LIFECYCLE_NODE, weights=str(tiny_weights), diagnostics_period=0.5)
        s.start_camera(rate=10.0, width=96, height=64)
        life = Lifecycle(probe, NODE)
        graph = probe.node

        def image_subscribers():
            return graph.count_subscribers("/camera/image_raw")

        assert life.state() == "unconfigured"
        probe.spin_for(1.0)
        assert graph.count_publishers("/dpt/depth") == 0 and image_subscribers() == 0

        assert life.transition(Transition.TRANSITION_CONFIGURE), s.log()
        assert life.state() == "inactive"
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.subscribe("/dpt/class_table", DPT_MSGS.ClassTable, latched)
        assert probe.spin_until(lambda: probe.count("/dpt/class_table") >= 1, 15.0), "no class table"
        assert len(probe.latest("/dpt/class_table").classes) == 4
        probe.spin_for(1.0)
        assert image_subscribers() == 0, "an inactive node must not subscribe to the camera"

        assert life.transition(Transition.TRANSITION_ACTIVATE), s.log()
        assert life.state() == "active"
        probe.subscribe("/dpt/depth", Image, BEST_EFFORT)
        assert probe.spin_until(lambda: probe.count("/dpt/depth") >= 2, 60.0), s.log()
        assert probe.latest("/dpt/depth").encoding == "32FC1"

        assert life.transition(Transition.TRANSITION_DEACTIVATE)
        assert life.state() == "inactive"
        assert probe.spin_until(lambda: image_subscribers() == 0, 10.0), "camera subscription left behind"
        probe.spin_for(0.5)
        received = probe.count("/dpt/depth")
        probe.spin_for(1.5)
        assert probe.count("/dpt/depth") == received, "depth published while inactive"

        assert life.transition(Transition.TRANSITION_CLEANUP)
        assert life.state() == "unconfigured"
        # Configure and activate again: parameters are not declared twice, inference resumes.
        assert life.transition(Transition.TRANSITION_CONFIGURE), s.log()
        assert life.transition(Transition.TRANSITION_ACTIVATE), s.log()
        assert probe.spin_until(lambda: probe.count("/dpt/depth") >= received + 2, 60.0), s.log()
        assert node.poll() is None
    assert s.exit_codes["node"] == 0, s.log()


def test_failed_configure_reports_the_reason_and_keeps_serving_the_lifecycle(ros_env, tmp_path):
    missing = tmp_path / "no_such_weights.safetensors"
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        node = s.start_node(NODE, module=LIFECYCLE_NODE, weights=str(missing))
        life = Lifecycle(probe, NODE)
        assert not life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.state() == "unconfigured"
        assert node.poll() is None, "a failed configure must not end the process"
        s.wait_for_log("configure failed: could not load weights", 10.0)
        assert str(missing) in s.log()
        assert probe.node.count_publishers("/dpt/depth") == 0
    assert s.exit_codes["node"] == 0, s.log()


def test_parameters_set_before_configure_take_effect(ros_env, tiny_weights, tmp_path):
    """`ros2 param set` on an unconfigured node: every parameter exists from construction; the
    start-up ones are writable until configure (which reads them) and refused while configured."""
    missing = tmp_path / "not_these.safetensors"
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        # Started with weights that do not exist: only a set before configure can make it succeed.
        s.start_node(NODE, module=LIFECYCLE_NODE, weights=str(missing))
        life = Lifecycle(probe, NODE)
        assert life.state() == "unconfigured"
        results = s.set_parameters(NODE, weights=str(tiny_weights), output_namespace="preset")
        assert [r.successful for r in results] == [True, True], [r.reason for r in results]
        bad = s.set_parameters(NODE, precision="fp8")[0]  # checked like at configure
        assert not bad.successful and "precision must be one of" in bad.reason

        assert life.transition(Transition.TRANSITION_CONFIGURE), s.log()
        assert life.state() == "inactive"
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.subscribe("/preset/class_table", DPT_MSGS.ClassTable, latched)
        assert probe.spin_until(lambda: probe.count("/preset/class_table") >= 1, 15.0), s.log()
        assert probe.latest("/preset/class_table").model_name == str(tiny_weights)

        refused = s.set_parameters(NODE, weights=str(missing))[0]
        assert not refused.successful and "unconfigured" in refused.reason
        assert life.transition(Transition.TRANSITION_CLEANUP)
        assert s.set_parameters(NODE, weights=str(missing))[0].successful  # unconfigured again
        assert not life.transition(Transition.TRANSITION_CONFIGURE)  # ... and configure reads it
        s.wait_for_log(str(missing), 10.0)
    assert s.exit_codes["node"] == 0, s.log()
