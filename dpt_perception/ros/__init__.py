"""The ROS 2 side of dpt_perception: the node, its parameters, message conversion, the demo.

This is the only subpackage that imports rclpy; everything it computes comes from
`dpt_perception.inference`.
"""
