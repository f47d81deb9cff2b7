"""Launch dpt_node (and optionally RViz2 and the demo camera).

    ros2 launch dpt_perception dpt.launch.py image_topic:=/camera/color/image_raw \\
        camera_info_topic:=/camera/color/camera_info weights:=dpt_hybrid_nyu rviz:=true

Arguments left empty keep the value of the parameters file (config/dpt.yaml by default).
FASTDDS_DEFAULT_PROFILES_FILE is set to the package's config/fastdds_images.xml (a large
shared-memory segment for image-sized messages) unless it is already set.
"""
import os
import sys
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "dpt_perception"

# name: (default, description). String-valued node parameters are passed only when non-empty.
ARGUMENTS = {
    "namespace": ("", "Namespace of the node (and of its relative input/output topics)."),
    "params_file": ("", "Parameters file; empty = the package's config/dpt.yaml."),
    "image_topic": ("", "Camera image topic (sensor_msgs/Image; with image_transport:=compressed the node "
                        "subscribes to <image_topic>/compressed)."),
    "camera_info_topic": ("", "sensor_msgs/CameraInfo topic of the camera."),
    "image_transport": ("", "raw or compressed."),
    "model": ("", "Architecture preset name (only for checkpoints that do not identify themselves)."),
    "weights": ("", "Official checkpoint name (downloaded once) or a checkpoint path."),
    "device": ("", "auto (CUDA when present, else CPU), cpu, cuda or cuda:N."),
    "precision": ("", "fp32, fp16 (CUDA) or bf16."),
    "net_size": ("", "Inference resolution as [height, width], multiples of 32, e.g. '[384, 512]'."),
    "depth_mode": ("", "auto, model, fixed or fit (see config/dpt.yaml)."),
    "sparse_depth_topic": ("", "Sparse metric depth for depth_mode fit."),
    "rviz": ("false", "Start RViz2 with the package's rviz/dpt.rviz."),
    "fixed_frame": ("camera_optical_frame", "RViz fixed frame: the frame_id of your camera images."),
    "demo_camera": ("false", "Also start dpt_camera_publisher (synthetic frames + CameraInfo)."),
    "lifecycle": ("false", "Start dpt_lifecycle_node instead: it waits unconfigured for configure/activate "
                           "transitions (ros2 lifecycle set, or a lifecycle manager)."),
}
_STRING_PARAMETERS = ("image_topic", "camera_info_topic", "image_transport", "model", "weights", "device",
                      "precision", "depth_mode", "sparse_depth_topic")


def _console(stream) -> dict:
    """Node arguments for console output: colours (a pseudo-terminal) only when the launch itself
    writes to a terminal; redirected to a file, the nodes' output carries no ANSI colour codes
    (RCUTILS_COLORIZED_OUTPUT=0 unless set explicitly) and Python's output stays unbuffered."""
    if stream.isatty():
        return {"emulate_tty": True}
    return {"emulate_tty": False, "additional_env": {
        "RCUTILS_COLORIZED_OUTPUT": os.environ.get("RCUTILS_COLORIZED_OUTPUT", "0"), "PYTHONUNBUFFERED": "1"}}


def _is_true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def _rviz_config(share: str, namespace: str, fixed_frame: str) -> str:
    """The shipped RViz config with the fixed frame and the topics' namespace filled in."""
    with open(os.path.join(share, "rviz", "dpt.rviz"), encoding="utf-8") as f:
        text = f.read()
    text = text.replace("Fixed Frame: camera_optical_frame", f"Fixed Frame: {fixed_frame}")
    if namespace.strip("/"):
        text = text.replace("Value: /dpt/", f"Value: /{namespace.strip('/')}/dpt/")
    handle, path = tempfile.mkstemp(prefix="dpt_", suffix=".rviz")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _actions(context):
    share = get_package_share_directory(PACKAGE)
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {name: arg[name] for name in _STRING_PARAMETERS if arg[name]}
    if arg["net_size"]:
        sizes = yaml.safe_load(arg["net_size"])
        if not (isinstance(sizes, list) and len(sizes) == 2 and all(isinstance(v, int) for v in sizes)):
            raise ValueError(f"net_size must look like '[384, 512]' (two integers), got {arg['net_size']!r}")
        overrides["net_size"] = sizes
    params_file = arg["params_file"] or os.path.join(share, "config", "dpt.yaml")
    executable = "dpt_lifecycle_node" if _is_true(arg["lifecycle"]) else "dpt_node"
    # The node ending (a start-up failure: exit 1 with its reason) ends the launch.
    actions = [Node(package=PACKAGE, executable=executable, name="dpt_node", namespace=arg["namespace"],
                    parameters=[params_file, overrides], output="screen",
                    on_exit=[Shutdown(reason=f"{executable} exited")], **_console(sys.stdout))]
    if _is_true(arg["demo_camera"]):
        # The demo camera publishes where the node listens.
        camera = {"frame_id": arg["fixed_frame"]}
        camera.update({name: arg[name] for name in ("image_topic", "camera_info_topic") if arg[name]})
        actions.append(Node(package=PACKAGE, executable="dpt_camera_publisher", name="dpt_camera_publisher",
                            namespace=arg["namespace"], parameters=[camera], output="screen",
                            **_console(sys.stdout)))
    if _is_true(arg["rviz"]):
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", _rviz_config(share, arg["namespace"], arg["fixed_frame"])]))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    actions = [DeclareLaunchArgument(name, default_value=default, description=text)
               for name, (default, text) in ARGUMENTS.items()]
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                              os.path.join(share, "config", "fastdds_images.xml")))
    actions.append(OpaqueFunction(function=_actions))
    return LaunchDescription(actions)
