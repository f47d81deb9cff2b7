"""Child process for test_package_build: publish or receive a dpt_perception/ClassTable.

`pub`: publishes one known table on a latched (transient local) topic and keeps serving.
`sub`: a late-joining subscriber; prints the received table as one JSON line and exits 0,
or exits 3 after the timeout.
"""
import json
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import ColorRGBA

from dpt_perception.msg import ClassInfo, ClassTable

TOPIC = "/dpt_test/class_table"
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)
CLASSES = [(0, "wall", (0.47, 0.47, 0.47)), (7, "floor", (0.31, 0.2, 0.2)), (300, "sky", (0.02, 0.9, 1.0))]


def publish(seconds: float) -> int:
    node = rclpy.create_node("class_table_pub")
    pub = node.create_publisher(ClassTable, TOPIC, LATCHED)
    msg = ClassTable(model_name="roundtrip-test", ignore_id=255)
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec = 1234
    msg.header.stamp.nanosec = 5678
    for class_id, name, (r, g, b) in CLASSES:
        msg.classes.append(ClassInfo(id=class_id, name=name, color=ColorRGBA(r=r, g=g, b=b, a=1.0)))
    pub.publish(msg)
    print("published", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    return 0


def subscribe(seconds: float) -> int:
    node = rclpy.create_node("class_table_sub")
    received = []
    node.create_subscription(ClassTable, TOPIC, received.append, LATCHED)
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not received:
        return 3
    msg = received[0]
    print(json.dumps({
        "frame_id": msg.header.frame_id,
        "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
        "model_name": msg.model_name,
        "ignore_id": msg.ignore_id,
        "classes": [[c.id, c.name, [round(c.color.r, 4), round(c.color.g, 4), round(c.color.b, 4)]]
                    for c in msg.classes],
    }), flush=True)
    return 0


def main() -> int:
    mode, seconds = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    try:
        return publish(seconds) if mode == "pub" else subscribe(seconds)
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
