"""The node's parameters: declaration with descriptors, validation, and a typed snapshot.

`_SPEC` is the one source of truth for every parameter (name, type, default, range, whether it
can change at runtime, description). The node declares from it (the description is what
`ros2 param describe` shows), and `make generate` (`python -m dpt_perception.ros.generate`)
writes config/dpt.yaml, the launch file's node arguments (NODE_ARGUMENTS in launch/dpt.launch.py)
and the parameter table of docs/node.md from it; test/test_generated_files.py fails when one is stale.
Adding a parameter = one entry here + `make generate` (+ its use in the node).
Parameters that change what was loaded or subscribed at start-up are read-only;
the ones listed in `RUNTIME_PARAMETERS` may be changed while the node runs and are validated
in the node's on-set-parameters callback (`validate_runtime_change`).
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import make_dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterValueException
from rclpy.expand_topic_name import expand_topic_name
from rclpy.validate_full_topic_name import validate_full_topic_name
from rclpy.validate_namespace import validate_namespace

from dpt_perception.inference.preprocess import PREPROCESSING

DEPTH_MODES = ("auto", "model", "fixed", "fit")
DEVICES_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"
# "auto": chosen at start-up per device, measured and cached (dpt_perception.inference.autotune).
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BACKENDS = ("auto", "eager", "compiled", "onnxruntime", "tensorrt")  # dpt_perception.inference.backends
TRANSPORTS = ("raw", "compressed")
POINT_COLORS = ("image", "labels")
NET_SIZE_MULTIPLE = 32  # DPTConfig.net_size must be multiples of 32 (4 stride-2 fusion levels x patch 16 / 2)
NET_SIZE_RANGE = (32, 4096)
# Depth (NYUv2 metric) + segmentation (ADE20K, 150 classes): every output from a default start.
DEFAULT_WEIGHTS = ("dpt_hybrid_nyu", "dpt_hybrid_ade20k")
MODEL_NET_SIZE = (0, 0)  # net_size value meaning "the model's own"; [] cannot be typed in a params file

_T = ParameterType
# Sections of config/dpt.yaml and of the docs' parameter table, in this order.
GROUPS = {"model": "model", "inputs": "inputs", "depth": "depth semantics", "outputs": "outputs"}
# name: (default, type, description, read_only, extra). extra: "group" (a GROUPS key, required),
# "range" (float) / "int_range" (int) (lo, hi) bounds enforced by the descriptor, "launch": True
# to offer it as an argument of launch/dpt.launch.py.
_SPEC: dict[str, tuple] = {
    "model": (
        "",
        _T.PARAMETER_STRING,
        "Architecture preset name (e.g. dpt_hybrid_nyu, dpt_hybrid_ade20k). Needed only when "
        "`weights` is a foreign checkpoint without its own config; empty = the preset named by "
        "`weights` or the config stored next to our own checkpoints.",
        True,
        {"group": "model", "launch": True},
    ),
    "weights": (
        list(DEFAULT_WEIGHTS),
        _T.PARAMETER_STRING_ARRAY,
        "One checkpoint, or a depth + segmentation pair [DEPTH, SEG] (either order) served together: "
        "each an official checkpoint name (list: `python -m dpt_perception.inference.weights list`; "
        "downloaded once into ~/.cache/dpt_perception, SHA-256 checked), 'demo' (the bundled demo model, "
        "trained on synthetic scenes only) or a path (our *.safetensors + *.json, an HF directory or an "
        "official .pt file). A pair runs its two encoders per frame unless a distilled one-encoder "
        "checkpoint for it is cached. A single string is accepted too. Default: NYUv2 metric depth "
        "(indoor, metres) + ADE20K labels (150 classes).",
        True,
        {"group": "model", "launch": True, "dynamic_typing": True},
    ),
    "device": (
        "auto",
        _T.PARAMETER_STRING,
        f"Inference device: {DEVICES_HELP}.",
        True,
        {"group": "model", "launch": True},
    ),
    "precision": (
        "auto",
        _T.PARAMETER_STRING,
        f"Inference precision, one of {PRECISIONS} (fp16/bf16 only where the device supports them). "
        "auto = the fastest precision whose outputs agree with fp32 on a check frame at start-up "
        "(bf16 on CPU only with native bf16, fp16/bf16 on GPU), cached per machine and model "
        "(docs/deployment.md).",
        True,
        {"group": "model", "launch": True},
    ),
    "backend": (
        "auto",
        _T.PARAMETER_STRING,
        f"Inference engine, one of {BACKENDS}: auto (eager, or compiled on a GPU when it measures "
        "faster at start-up; cached); eager PyTorch; compiled (torch.compile, slow first "
        "frames per resolution); onnxruntime (exports a dynamic-size ONNX file into the weights cache "
        "on first use; CUDA/TensorRT execution providers when installed); tensorrt (needs the "
        "tensorrt package and a GPU; engines cached on disk).",
        True,
        {"group": "model"},
    ),
    "preprocessing": (
        "fast",
        _T.PARAMETER_STRING,
        f"Pre-processing and output resampling, one of {PREPROCESSING}: fast (uint8 cubic resize, "
        "exact bilinear labels, depth clamped at 0) or reference (the official DPT scripts' float "
        "pipeline with bicubic depth and logits: their outputs exactly, slower; see docs/model.md).",
        True,
        {"group": "model"},
    ),
    "net_size": (
        list(MODEL_NET_SIZE),
        _T.PARAMETER_INTEGER_ARRAY,
        f"Inference resolution [height, width], multiples of {NET_SIZE_MULTIPLE} in "
        f"[{NET_SIZE_RANGE[0]}, {NET_SIZE_RANGE[1]}]; the image is resized keeping its aspect ratio (the "
        "'minimal' rule of the DPT reference) so its sides end near these. [0, 0] = the model's own "
        "(trained) net_size, e.g. 480x640 for dpt_hybrid_nyu, 352x1216 for dpt_hybrid_kitti, 384x384 for "
        "the MiDaS models; lower it (e.g. [256, 320]) for speed on a CPU.",
        False,
        {"group": "model", "launch": True},
    ),
    "cameras": (
        [""],
        _T.PARAMETER_STRING_ARRAY,
        "Camera namespaces served by this node, e.g. ['/front', '/rear']; their latest frames are "
        "batched into one forward pass. [''] = one camera on `image_topic`/`camera_info_topic`.",
        True,
        {"group": "inputs"},
    ),
    "image_topic": (
        "camera/image_raw",
        _T.PARAMETER_STRING,
        "Image topic (relative names resolve in each camera namespace). With image_transport "
        "'compressed' the node subscribes to <image_topic>/compressed.",
        True,
        {"group": "inputs", "launch": True},
    ),
    "camera_info_topic": (
        "camera/camera_info",
        _T.PARAMETER_STRING,
        "CameraInfo topic of the same camera (relative names resolve in each camera namespace); its K/P "
        "are scaled to the published depth size.",
        True,
        {"group": "inputs", "launch": True},
    ),
    "image_transport": (
        "raw",
        _T.PARAMETER_STRING,
        "'raw' (sensor_msgs/Image: rgb8 bgr8 rgba8 bgra8 mono8 mono16 uyvy/yuv422 yuyv/yuv422_yuy2) or "
        "'compressed' (sensor_msgs/CompressedImage, jpeg/png, on <image_topic>/compressed).",
        True,
        {"group": "inputs", "launch": True},
    ),
    "output_namespace": (
        "dpt",
        _T.PARAMETER_STRING,
        "Prefix of every output topic; with several cameras each gets <output_namespace>/"
        "<camera namespace>/...",
        True,
        {"group": "outputs"},
    ),
    "depth_mode": (
        "auto",
        _T.PARAMETER_STRING,
        "How metres are obtained: 'model' (a metric fine-tune, e.g. NYU/KITTI), 'fixed' "
        "(inverse depth = depth_scale * output + depth_shift), 'fit' (online robust scale/shift "
        "fit against `sparse_depth_topic`), 'auto' = model if the model is metric, else fit if "
        "sparse_depth_topic is set, else fixed (with a warning: uncalibrated metres). "
        "depth/relative_inverse (unitless) is published in every mode.",
        True,
        {"group": "depth", "launch": True},
    ),
    "depth_scale": (
        1.0,
        _T.PARAMETER_DOUBLE,
        "Fixed mode: scale a in metric inverse depth 1/z = a * x + b (x = relative output); measure a "
        "and b once for your camera.",
        False,
        {"group": "depth"},
    ),
    "depth_shift": (
        0.0,
        _T.PARAMETER_DOUBLE,
        "Fixed mode: shift b in 1/z = a * x + b.",
        False,
        {"group": "depth"},
    ),
    "sparse_depth_topic": (
        "",
        _T.PARAMETER_STRING,
        "Fit mode: a sparse metric depth image (32FC1 metres or 16UC1 millimetres, 0/NaN = "
        "no measurement) registered to the camera image (any resolution), e.g. projected lidar; "
        "'' = none.",
        True,
        {"group": "depth", "launch": True},
    ),
    "sparse_depth_max_age": (
        0.5,
        _T.PARAMETER_DOUBLE,
        "Fit mode: largest |stamp difference| in seconds between a camera frame and the "
        "sparse depth used to fit it.",
        False,
        {"range": (0.0, 60.0), "group": "depth"},
    ),
    "max_depth": (
        0.0,
        _T.PARAMETER_DOUBLE,
        "Depth beyond this many metres is published as +Inf (REP 117 'too far'); 0 = no limit.",
        False,
        {"range": (0.0, 1.0e6), "group": "depth"},
    ),
    "labels_blend": (
        0.0,
        _T.PARAMETER_DOUBLE,
        "labels/color: weight of the camera image under the class colours (0 = pure colours).",
        False,
        {"range": (0.0, 1.0), "group": "outputs"},
    ),
    "points_decimation": (
        1,
        _T.PARAMETER_INTEGER,
        "Point cloud: keep every n-th row and column (the cloud stays organised).",
        False,
        {"int_range": (1, 64), "group": "outputs"},
    ),
    "points_max_range": (
        0.0,
        _T.PARAMETER_DOUBLE,
        "Point cloud: points farther than this (metres along z) become NaN; 0 = no limit.",
        False,
        {"range": (0.0, 1.0e6), "group": "outputs"},
    ),
    "points_color": (
        "image",
        _T.PARAMETER_STRING,
        f"Point cloud rgb field: {POINT_COLORS[0]!r} (camera colours) or {POINT_COLORS[1]!r} "
        "(class colours). The label field is always present when the model segments.",
        False,
        {"group": "outputs"},
    ),
    "too_far_classes": (
        ["auto"],
        _T.PARAMETER_STRING_ARRAY,
        "Classes whose pixels are +Inf in depth (REP 118 'too far') and produce no point: ['auto'] = "
        "the class named sky when the model has one; ['none'] = off; or class names of the model "
        "(unknown names are rejected with the list of valid ones).",
        False,
        {"group": "outputs"},
    ),
    "points_exclude_classes": (
        [""],
        _T.PARAMETER_STRING_ARRAY,
        "Classes left out of `points` and NaN in `depth/static` (e.g. ['person', 'car'] to map only "
        "the static world); [''] = none.",
        False,
        {"group": "outputs"},
    ),
    "diagnostics_period": (
        1.0,
        _T.PARAMETER_DOUBLE,
        "Seconds between /diagnostics messages.",
        True,
        {"range": (0.05, 60.0), "group": "outputs"},
    ),
    "max_latency_ms": (
        0.0,
        _T.PARAMETER_DOUBLE,
        "Latency budget of one inference (the PerceptionPipeline's total: resize, forward, outputs) in ms; "
        "the node picks the largest net_size (multiples of 32, the model's aspect, at most its own "
        "size) whose measured time fits, and re-picks when the time drifts. 0 = off. An explicit "
        "net_size wins (the budget then only reports on /diagnostics).",
        False,
        {"range": (0.0, 1.0e6), "group": "model"},
    ),
    "max_batch": (
        8,
        _T.PARAMETER_INTEGER,
        "Most camera frames in one forward pass (the newest frames of several cameras are batched).",
        True,
        {"int_range": (1, 64), "group": "model"},
    ),
}

RUNTIME_PARAMETERS = tuple(name for name, spec in _SPEC.items() if not spec[3])


PYTHON_TYPES = {
    _T.PARAMETER_BOOL: bool,
    _T.PARAMETER_INTEGER: int,
    _T.PARAMETER_DOUBLE: float,
    _T.PARAMETER_STRING: str,
    _T.PARAMETER_BOOL_ARRAY: list[bool],
    _T.PARAMETER_INTEGER_ARRAY: list[int],
    _T.PARAMETER_DOUBLE_ARRAY: list[float],
    _T.PARAMETER_STRING_ARRAY: list[str],
}

# The typed snapshot: one field per parameter, in _SPEC order.
Settings = make_dataclass("Settings", [(name, PYTHON_TYPES[spec[1]]) for name, spec in _SPEC.items()])
Settings.__doc__ = "A validated snapshot of the node's parameters (one field per `_SPEC` entry)."


def declare_only(node, read_only: bool = True) -> None:
    """Declare every parameter not declared yet, with its descriptor and default (overrides from
    the command line / params file apply). Raises ParameterException for an out-of-range value.
    read_only=False declares the start-up parameters writable (the lifecycle node, which refuses
    their changes itself while configured)."""
    for name, (default, ptype, text, spec_read_only, extra) in _SPEC.items():
        if node.has_parameter(name):  # a lifecycle node configured before
            continue
        descriptor = ParameterDescriptor(
            name=name, type=ptype, description=text, read_only=read_only and spec_read_only,
            dynamic_typing=bool(extra.get("dynamic_typing", False)),
        )
        if "range" in extra:
            lo, hi = extra["range"]
            descriptor.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
        if "int_range" in extra:
            lo, hi = extra["int_range"]
            descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
        try:
            node.declare_parameter(name, default, descriptor)
        except InvalidParameterValueException as exc:  # an override outside the range
            lo, hi = extra.get("range") or extra.get("int_range") or ("?", "?")
            # rclpy keeps the rejected value only inside its message text.
            found = re.match(r"Invalid parameter value \((.*)\) for parameter", str(exc.args[0]))
            value = found.group(1) if found else str(exc)
            raise ValueError(f"invalid parameters: {name} = {value} is outside [{lo}, {hi}]") from exc


def read_settings(node) -> Settings:
    """A validated snapshot of the declared parameters (ValueError naming every problem)."""
    values = {name: node.get_parameter(name).value for name in _SPEC}
    values["net_size"] = [int(v) for v in values["net_size"]]
    values["weights"] = weights_sources(values["weights"])
    values["cameras"] = [str(c) for c in values["cameras"]] or [""]
    for name in ("too_far_classes", "points_exclude_classes"):
        values[name] = [str(c) for c in values[name]]
    settings = Settings(**values)
    problems = [p for name in _SPEC if (p := validate_value(name, getattr(settings, name))) is not None]
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems))
    return settings


def weights_sources(value) -> list[str]:
    """`weights` as a list of sources: a string array as given, a single string as one source, and a
    string that is a list written out ("[a, b]", e.g. from a launch argument) as that list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            return [part.strip().strip("'\"") for part in text[1:-1].split(",") if part.strip()]
        return [text]
    return [str(v) for v in value]


def help_text(executable: str, summary: str) -> str:
    """`--help` of the node executables: usage, `summary`, then every parameter with its default."""
    lines = [
        f"usage: ros2 run dpt_perception {executable} [--ros-args -p NAME:=VALUE ... "
        "--params-file FILE -r FROM:=TO]",
        "",
        summary.strip(),
        "",
        "parameters (runtime = changeable with `ros2 param set` while running):",
    ]
    for name, (default, _type, text, read_only, _extra) in _SPEC.items():
        kind = "" if read_only else ", runtime"
        lines += [f"  {name} (default {default!r}{kind})", textwrap.fill(text, 96, initial_indent=" " * 6,
                                                                        subsequent_indent=" " * 6)]
    lines += ["", "Topics, depth modes and examples: docs/node.md."]
    return "\n".join(lines)


def wants_help(argv: list[str]) -> bool:
    """-h/--help before any --ros-args (after it, arguments belong to rcl)."""
    user_args = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return any(a in ("-h", "--help") for a in user_args)


def _name_problem(kind: str, text: str) -> str | None:
    """Why `text` is not a valid ROS topic name / namespace (the first line of rclpy's reason)."""
    try:
        if kind == "namespace":
            validate_namespace("/" + text.strip("/") if text.strip("/") else "/")
            if "//" in text:
                return "namespace must not contain repeated '/'"
        else:
            validate_full_topic_name(expand_topic_name(text, "dpt_node", "/"))
    except Exception as exc:  # rclpy raises NameValidationException or ValueError/RCLError
        reason = str(exc).strip().splitlines()[0].rstrip(":")
        return re.sub(r", at /\S+:\d+$", "", reason)  # drop rcl's C source location
    return None


# Every number parameter ends up in float32 arithmetic (depth maps, clouds): beyond float32's range
# it would silently become Inf there (depth_scale 1e39 gave depth 0.0 m).
FLOAT32_MAX = float.fromhex("0x1.fffffep+127")


def validate_value(name: str, value) -> str | None:
    """None when `value` is acceptable for parameter `name`, else the reason it is not."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:
        return (
            f"{name} = {value:g} is outside the float32 range [{-FLOAT32_MAX:.7g}, {FLOAT32_MAX:.7g}]"
            " the node computes in"
        )
    if name in ("image_topic", "camera_info_topic", "sparse_depth_topic", "output_namespace"):
        if name in ("sparse_depth_topic", "output_namespace") and not value:
            return None
        # Output topics are <output_namespace>/depth etc.: check a full name built from it.
        full = value.rstrip("/") + "/depth" if name == "output_namespace" else value
        problem = _name_problem("topic", full)
        return None if problem is None else f"{name} {value!r} is not a valid ROS name: {problem}"
    if name == "cameras":
        for camera in value:
            problem = _name_problem("namespace", camera)
            if problem is not None:
                return f"cameras entry {camera!r} is not a valid ROS namespace: {problem}"
    if name == "net_size":
        sizes = list(value)
        if tuple(sizes) == MODEL_NET_SIZE:
            return None
        if len(sizes) != 2:
            return f"net_size must be [height, width], got {sizes}"
        lo, hi = NET_SIZE_RANGE
        bad = [s for s in sizes if s % NET_SIZE_MULTIPLE or not lo <= s <= hi]
        if bad:
            return (
                f"net_size {sizes}: every side must be a multiple of {NET_SIZE_MULTIPLE} in [{lo}, {hi}]"
                f" (bad: {bad}), or [0, 0] for the model's own size"
            )
        return None
    if name == "precision" and value not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, got {value!r}"
    if name == "backend" and value not in BACKENDS:
        return f"backend must be one of {BACKENDS}, got {value!r}"
    if name == "preprocessing" and value not in PREPROCESSING:
        return f"preprocessing must be one of {PREPROCESSING}, got {value!r}"
    if name == "depth_mode" and value not in DEPTH_MODES:
        return f"depth_mode must be one of {DEPTH_MODES}, got {value!r}"
    if name == "image_transport" and value not in TRANSPORTS:
        return f"image_transport must be one of {TRANSPORTS}, got {value!r}"
    if name == "points_color" and value not in POINT_COLORS:
        return f"points_color must be one of {POINT_COLORS}, got {value!r}"
    if name == "device" and not (
        value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    ):
        return f"device must be {DEVICES_HELP}, got {value!r}"
    if name == "weights":
        value = weights_sources(value)  # a string (one source, or a list written out) or a list
    if name == "weights" and (not 1 <= len(value) <= 2 or not all(value)):
        return (
            "weights must be one checkpoint or a [depth, segmentation] pair (official names or paths), "
            f"got {list(value)}"
        )
    if name == "cameras" and len(set(value)) != len(value):
        return f"cameras must be distinct, got {list(value)}"
    if name == "depth_scale" and value <= 0.0:
        return f"depth_scale must be > 0 (inverse depth grows with the model output), got {value}"
    return None
