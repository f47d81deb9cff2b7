"""OutputProbe.call against a real service in another rclpy context over DDS: an unanswered
request is sent again (and a late reply to the abandoned one is ignored), and a missing service
gives None after the timeout instead of hanging."""

import random
import threading
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

import rclpy  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from dpt_perception.ros.probe import OutputProbe  # noqa: E402

pytestmark = pytest.mark.integration


class SlowFirstReplyServer:
    """A GetState service whose first answer comes after `delay` s; each answer's label is the
    request's ordinal, so the caller can tell which request was answered."""

    def __init__(self, domain_id: int, delay: float):
        self.delay, self.requests = delay, 0
        self.stop = threading.Event()
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("slow_server", context=self.context)
        self.node.create_service(GetState, "/slow_server/get_state", self._answer)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _answer(self, request, response):
        self.requests += 1
        if self.requests == 1:
            time.sleep(self.delay)
        response.current_state.label = str(self.requests)
        return response

    def _spin(self):
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self.stop.set()  # stop spinning before the context goes away
        self.thread.join(5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_call_resends_an_unanswered_request_and_gives_up_on_a_missing_service():
    domain_id = random.Random().randint(1, 101)
    server = SlowFirstReplyServer(domain_id, delay=1.5)
    probe = OutputProbe(domain_id=domain_id)
    try:
        client = probe.node.create_client(GetState, "/slow_server/get_state")
        response = probe.call(client, GetState.Request(), timeout=30.0, resend_after=0.5)
        assert response is not None
        assert response.current_state.label != "1", "the abandoned request's late reply was taken"
        assert server.requests >= 2
        # Sent once (resend_after=None): the one request is answered, late, within the timeout.
        server.requests = 0
        response = probe.call(client, GetState.Request(), timeout=30.0, resend_after=None)
        assert response is not None and response.current_state.label == "1"
        missing = probe.node.create_client(GetState, "/nobody/get_state")
        started = time.monotonic()
        assert probe.call(missing, GetState.Request(), timeout=1.0) is None
        assert time.monotonic() - started < 10.0
    finally:
        probe.close()
        server.close()
