"""Launch dpt_node (and optionally RViz2 and the demo camera).

    ros2 launch dpt_perception dpt.launch.py image_topic:=/camera/color/image_raw \\
        camera_info_topic:=/camera/color/camera_info weights:=dpt_hybrid_nyu rviz:=true

Arguments left empty keep the value of the parameters file (config/dpt.yaml by default). The node
parameters offered as arguments (NODE_ARGUMENTS) are generated from dpt_perception/ros/parameters.py
by `make generate`.
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

# Node parameters offered as arguments: name -> (parameter type, description).
# BEGIN generated from dpt_perception/ros/parameters.py by `make generate` (edit the spec)
NODE_ARGUMENTS = {
    "model": (
        "string",
        "Architecture preset name (e.g. dpt_hybrid_nyu, dpt_hybrid_ade20k). Needed only when "
        "`weights` is a foreign checkpoint without its own config; empty = the preset named by "
        "`weights` or the config stored next to our own checkpoints.",
    ),
    "weights": (
        "string",
        "One checkpoint, or a depth + segmentation pair [DEPTH, SEG] (either order) served "
        "together: each an official checkpoint name (list: `python -m "
        "dpt_perception.inference.weights list`; downloaded once into ~/.cache/dpt_perception, "
        "SHA-256 checked), 'demo' (the bundled demo model, trained on synthetic scenes only) or"
        " a path (our *.safetensors + *.json, an HF directory or an official .pt file). A pair "
        "runs its two encoders per frame unless a distilled one-encoder checkpoint for it is "
        "cached. A single string is accepted too. Default: NYUv2 metric depth (indoor, metres) "
        "+ ADE20K labels (150 classes).",
    ),
    "device": (
        "string",
        "Inference device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
    ),
    "precision": (
        "string",
        "Inference precision, one of ('auto', 'fp32', 'fp16', 'bf16') (fp16/bf16 only where the"
        " device supports them). auto = the fastest precision whose outputs agree with fp32 on "
        "a check frame at start-up (bf16 on CPU only with native bf16, fp16/bf16 on GPU), "
        "cached per machine and model (docs/deployment.md).",
    ),
    "net_size": (
        "integer_array",
        "Inference resolution [height, width], multiples of 32 in [32, 4096]; the image is "
        "resized keeping its aspect ratio (the 'minimal' rule of the DPT reference) so its "
        "sides end near these. [0, 0] = the model's own (trained) net_size, e.g. 480x640 for "
        "dpt_hybrid_nyu, 352x1216 for dpt_hybrid_kitti, 384x384 for the MiDaS models; lower it "
        "(e.g. [256, 320]) for speed on a CPU.",
    ),
    "image_topic": (
        "string",
        "Image topic (relative names resolve in each camera namespace). With image_transport "
        "'compressed' the node subscribes to <image_topic>/compressed.",
    ),
    "camera_info_topic": (
        "string",
        "CameraInfo topic of the same camera (relative names resolve in each camera namespace);"
        " its K/P are scaled to the published depth size.",
    ),
    "image_transport": (
        "string",
        "'raw' (sensor_msgs/Image: rgb8 bgr8 rgba8 bgra8 mono8 mono16 uyvy/yuv422 "
        "yuyv/yuv422_yuy2) or 'compressed' (sensor_msgs/CompressedImage, jpeg/png, on "
        "<image_topic>/compressed).",
    ),
    "depth_mode": (
        "string",
        "How metres are obtained: 'model' (a metric fine-tune, e.g. NYU/KITTI), 'fixed' "
        "(inverse depth = depth_scale * output + depth_shift), 'fit' (online robust scale/shift"
        " fit against `sparse_depth_topic`), 'auto' = model if the model is metric, else fit if"
        " sparse_depth_topic is set, else fixed (with a warning: uncalibrated metres). "
        "depth/relative_inverse (unitless) is published in every mode.",
    ),
    "sparse_depth_topic": (
        "string",
        "Fit mode: a sparse metric depth image (32FC1 metres or 16UC1 millimetres, 0/NaN = no "
        "measurement) registered to the camera image (any resolution), e.g. projected lidar; ''"
        " = none.",
    ),
}
# END generated

# name: (default, description). Node parameters are passed only when their argument is non-empty.
ARGUMENTS = {
    "namespace": ("", "Namespace of the node (and of its relative input/output topics)."),
    "params_file": ("", "Parameters file; empty = the package's config/dpt.yaml."),
    **{name: ("", text) for name, (_type, text) in NODE_ARGUMENTS.items()},
    "rviz": ("false", "Start RViz2 with the package's rviz/dpt.rviz."),
    "fixed_frame": ("camera_optical_frame", "RViz fixed frame: the frame_id of your camera images."),
    "demo_camera": ("false", "Also start dpt_camera_publisher (synthetic frames + CameraInfo)."),
    "lifecycle": ("false", "Start dpt_lifecycle_node instead: it waits unconfigured for configure/activate "
                           "transitions (ros2 lifecycle set, or a lifecycle manager)."),
}
# A non-string argument is YAML text (e.g. net_size:='[384, 512]'), checked against the parameter type.
_ELEMENT_TYPES = {"bool": bool, "integer": int, "double": (int, float), "string": str}


def _is_a(value, kind) -> bool:
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _parameter_value(name: str, text: str, type_word: str):
    """A launch argument's text as the node parameter's value (`type_word`: see NODE_ARGUMENTS)."""
    if type_word == "string":
        return text
    value = yaml.safe_load(text)
    kind = _ELEMENT_TYPES[type_word.removesuffix("_array")]
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) != type_word.endswith("_array") or not all(_is_a(v, kind) for v in items):
        example = "'[384, 512]'" if type_word == "integer_array" else "YAML"
        raise ValueError(f"{name} must look like {example} ({type_word.replace('_', ' ')}), got {text!r}")
    return value


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


def _end_launch(executable: str):
    """The node's on_exit: its end ends the launch. A non-zero exit status (a start-up failure: exit
    1, its reason logged by the node) is raised as an error, because that is what makes the launch's
    own exit status non-zero: `LaunchService.run` (what `ros2 launch` returns) gives 0 after any
    Shutdown, however it came about, and 1 when an error reached the launch loop, which then
    shuts everything down (the demo camera too) as Shutdown would."""
    def on_exit(event, context):
        if event.returncode:
            raise RuntimeError(f"{executable} exited with status {event.returncode}")
        return [Shutdown(reason=f"{executable} exited")]

    return on_exit


def _actions(context):
    share = get_package_share_directory(PACKAGE)
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {name: _parameter_value(name, arg[name], type_word)
                 for name, (type_word, _text) in NODE_ARGUMENTS.items() if arg[name]}
    params_file = arg["params_file"] or os.path.join(share, "config", "dpt.yaml")
    executable = "dpt_lifecycle_node" if _is_true(arg["lifecycle"]) else "dpt_node"
    actions = [Node(package=PACKAGE, executable=executable, name="dpt_node", namespace=arg["namespace"],
                    parameters=[params_file, overrides], output="screen",
                    on_exit=_end_launch(executable), **_console(sys.stdout))]
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
