"""A demo camera: streams sample frames + a matching CameraInfo over DDS.

    ros2 run dpt_perception dpt_camera_publisher --ros-args -p rate:=15.0 -p encoding:=bgr8 \\
        -p image_topic:=/camera/color/image_raw -p camera_info_topic:=/camera/color/camera_info

Image and CameraInfo carry the same header (stamp = publish time, frame_id = `frame_id`), like
a real camera driver. The frames loop when `num_frames` exceeds the number of distinct frames.
"""

from __future__ import annotations

# `python -m`: Ctrl-C while torch and rclpy import exits quietly, as with bin/dpt_camera_publisher
# (main restores Python's handler before rclpy.init).
if __name__ == "__main__":
    from dpt_perception.command_line import exit_quietly_on_interrupt

    exit_quietly_on_interrupt()

import sys
import textwrap

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from dpt_perception.command_line import restore_interrupts
from dpt_perception.inference.sample_frames import sample_frames
from dpt_perception.ros.image_conversion import array_to_image, rgb8_to_compressed, rgb8_to_image
from dpt_perception.ros.parameters import wants_help


def camera_info_from_k(k: np.ndarray, height: int, width: int, header=None) -> CameraInfo:
    """A rectified pinhole CameraInfo (no distortion, P = [K | 0])."""
    info = CameraInfo(height=height, width=width, distortion_model="plumb_bob")
    if header is not None:
        info.header = header
    info.d = [0.0] * 5
    info.k = [float(v) for v in k.reshape(-1)]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [float(v) for v in np.hstack([k, np.zeros((3, 1))]).reshape(-1)]
    return info


def sparse_depth(depth: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Keep a random `fraction` of the valid pixels of a dense depth map (like projected lidar
    returns); NaN elsewhere."""
    rng = np.random.default_rng(seed)
    keep = (rng.random(depth.shape) < fraction) & np.isfinite(depth) & (depth > 0)
    return np.where(keep, depth, np.nan).astype(np.float32)


# name: (default, description); declared as ROS parameters and listed by --help.
PARAMETERS = {
    "rate": (10.0, "Frames per second."),
    "width": (320, "Image width in pixels."),
    "height": (240, "Image height in pixels."),
    "encoding": ("rgb8", "rgb8, bgr8, rgba8, bgra8, mono8, mono16 (sensor_msgs/Image), or jpeg / png "
                         "(sensor_msgs/CompressedImage on <image_topic>/compressed)."),
    "frame_id": ("camera_optical_frame", "frame_id of the image and CameraInfo headers."),
    "num_frames": (0, "Stop after this many frames; 0 = forever."),
    "distinct_frames": (8, "Number of different scenes, looped."),
    "image_topic": ("camera/image_raw", "Image topic (relative names resolve in the node namespace)."),
    "camera_info_topic": ("camera/camera_info", "CameraInfo topic."),
    "camera_info_scale": (1.0, "The CameraInfo describes the camera at this multiple of the image size "
                               "(as a driver calibrated at full resolution streaming a binned image)."),
    "sparse_depth_topic": ("", "'' = off; else 32FC1 metres of the scene's true depth at a random "
                               "sparse_depth_fraction of the pixels, same header as the image."),
    "sparse_depth_fraction": (0.03, "Fraction of pixels carrying sparse depth."),
}


def help_text() -> str:
    lines = [
        "usage: ros2 run dpt_perception dpt_camera_publisher [--ros-args -p NAME:=VALUE ... -r FROM:=TO]",
        "",
        __doc__.strip(),
        "",
        "parameters:",
    ]
    for name, (default, text) in PARAMETERS.items():
        lines += [f"  {name} (default {default!r})", textwrap.fill(text, 96, initial_indent=" " * 6,
                                                                   subsequent_indent=" " * 6)]
    return "\n".join(lines)


class CameraPublisher(Node):
    """Publishes the sample frames with the parameters of `PARAMETERS`."""

    def __init__(self):
        super().__init__("dpt_camera_publisher")
        for name, (value, _text) in PARAMETERS.items():
            self.declare_parameter(name, value)
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        self._encoding = get("encoding")
        self._frame_id = get("frame_id")
        self._limit = int(get("num_frames"))
        height, width = int(get("height")), int(get("width"))
        frames = sample_frames(max(1, int(get("distinct_frames"))), height, width)
        compressed = self._encoding in ("jpeg", "png")
        topic = get("image_topic") + ("/compressed" if compressed else "")
        self._image_pub = self.create_publisher(
            CompressedImage if compressed else Image, topic, qos_profile_sensor_data
        )
        self._info_pub = self.create_publisher(CameraInfo, get("camera_info_topic"), qos_profile_sensor_data)
        # Everything is encoded once; the timer only stamps and publishes.
        scale = float(get("camera_info_scale"))
        info_h, info_w = int(round(height * scale)), int(round(width * scale))
        self._messages, self._infos, self._sparse = [], [], []
        for i, (rgb, k, depth) in enumerate(frames):
            self._messages.append(
                rgb8_to_compressed(rgb, self._encoding) if compressed else rgb8_to_image(rgb, self._encoding)
            )
            k_info = k.copy()
            k_info[:2] *= scale
            self._infos.append(camera_info_from_k(k_info, info_h, info_w, None))
            fraction = float(get("sparse_depth_fraction"))
            self._sparse.append(array_to_image(sparse_depth(depth, fraction, seed=i), "32FC1"))
        self._sparse_pub = None
        if get("sparse_depth_topic"):
            self._sparse_pub = self.create_publisher(
                Image, get("sparse_depth_topic"), qos_profile_sensor_data
            )
        self._sent = 0
        self.done = False
        self.create_timer(1.0 / float(get("rate")), self._tick)
        self.get_logger().info(
            f"publishing {width}x{height} {self._encoding} on {self._image_pub.topic_name} "
            f"at {get('rate')} Hz"
        )

    def _tick(self):
        if self._limit and self._sent >= self._limit:
            self.done = True
            return
        index = self._sent % len(self._messages)
        stamp = self.get_clock().now().to_msg()
        messages = [self._infos[index], self._messages[index]]
        if self._sparse_pub is not None:
            messages.append(self._sparse[index])
        for msg in messages:
            msg.header.stamp = stamp
            msg.header.frame_id = self._frame_id
        self._info_pub.publish(self._infos[index])
        if self._sparse_pub is not None:
            self._sparse_pub.publish(self._sparse[index])
        self._image_pub.publish(self._messages[index])
        self._sent += 1


def main(argv=None) -> int:
    argv = list(argv if argv is not None else sys.argv)
    if wants_help(argv):
        print(help_text())
        return 0
    restore_interrupts()
    node = None
    try:
        rclpy.init(args=argv)
        node = CameraPublisher()
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # else: Ctrl-C while starting (rclpy's handler shut the context down under the step running)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
