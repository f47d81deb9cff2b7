"""The node's lazy outputs: subscriber counts kept by the publishers' matched events (real rclpy and
Fast DDS in this process, on a private domain), read by the worker without polling the publisher."""

import random
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dpt_perception.ros.camera import IMAGE_OUTPUT_QOS, create_counted_publisher  # noqa: E402


def _spin_until(executor, condition, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=0.05)
    return condition()


def test_matched_events_follow_subscribers_coming_and_going():
    context = Context()
    rclpy.init(context=context, domain_id=random.Random().randint(1, 101))
    try:
        node = rclpy.create_node("counted_publisher", context=context)
        other = rclpy.create_node("late_subscriber", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(other)
        publisher, count = create_counted_publisher(node, Image, "out/depth", IMAGE_OUTPUT_QOS)
        assert count.from_events, "Fast DDS offers matched events; the count must not poll"
        assert count() == 0
        calls = []
        publisher.get_subscription_count = lambda: calls.append(1) or 0  # polling would show here
        subs = [other.create_subscription(Image, "out/depth", lambda _m: None, IMAGE_OUTPUT_QOS)
                for _ in range(2)]
        assert _spin_until(executor, lambda: count() == 2), f"count {count()} after two subscribers"
        other.destroy_subscription(subs.pop())
        assert _spin_until(executor, lambda: count() == 1), f"count {count()} after one left"
        other.destroy_subscription(subs.pop())
        assert _spin_until(executor, lambda: count() == 0), f"count {count()} after both left"
        assert calls == []
        executor.shutdown()
    finally:
        rclpy.try_shutdown(context=context)
