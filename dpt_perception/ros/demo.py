"""End-to-end demo over real DDS: camera process -> dpt_node process -> files.

    python -m dpt_perception.ros.demo --out outputs/demo [--weights W] [--frames 10] [--timeout 120]

Starts `dpt_camera_publisher` (synthetic frames, CameraInfo and sparse ground-truth depth) and
`dpt_node` as separate processes on a private ROS domain, subscribes to the node's outputs, and
writes into --out:
  camera.png            the source frame
  depth_color.png       metric depth, colourised (near = bright)
  relative_inverse.png  relative inverse depth, colourised
  labels_color.png      class colours (when the model segments)
  points.ply            the point cloud (x, y, z, rgb, label; finite points only)
  latency.json          per-output latency (receive time - image stamp), node diagnostics, weights
and prints a summary. Without --weights it uses the official NYU metric checkpoint if it is in the
cache, else the bundled demo weights (trained on these synthetic scenes), else a randomly
initialised tiny model, and then says plainly that the outputs are not meaningful.
Ends on its own after --frames outputs or --timeout seconds.
"""

from __future__ import annotations

# `python -m`: Ctrl-C while torch and rclpy import exits quietly, as with bin/dpt_demo
# (main restores Python's handler before rclpy.init).
if __name__ == "__main__":
    from dpt_perception.command_line import exit_quietly_on_interrupt

    exit_quietly_on_interrupt(130)

import argparse
import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_perception.command_line import program_name, restore_interrupts
from dpt_perception.inference.colorize import colorize_depth
from dpt_perception.inference.geometry import unpack_rgb_float
from dpt_perception.inference.ply import write_ply
from dpt_perception.model.checkpoints.dispatch import DEMO_WEIGHTS
from dpt_perception.ros.image_conversion import image_to_rgb8, output_image_to_array
from dpt_perception.ros.pointcloud2 import cloud_to_arrays
from dpt_perception.ros.probe import (
    OutputProbe,
    param_args,
    private_ros_env,
    start_process,
    status_values,
    stop_process,
)

DEFAULT_OFFICIAL = "dpt_hybrid_nyu"


def choose_weights(requested: str | None, out: Path) -> tuple[str, bool, str]:
    """(weights for the node, meaningful?, explanation)."""
    if requested:
        return requested, True, f"weights given on the command line: {requested}"
    from dpt_perception.inference.weights import resolve_weights

    try:
        path = resolve_weights(DEFAULT_OFFICIAL, download=False)
        return str(path), True, f"official checkpoint {DEFAULT_OFFICIAL} found in the cache ({path})"
    except FileNotFoundError:
        pass
    if DEMO_WEIGHTS.is_file():
        return (
            str(DEMO_WEIGHTS),
            True,
            f"bundled demo weights {DEMO_WEIGHTS.name}: a small depth + 5-class model trained on the "
            "synthetic scenes this demo streams (reproduce: python -m dpt_perception.training.train "
            "--config config/train_demo.yaml); meaningful on these frames only",
        )
    import torch

    from dpt_perception.model import DPT, DPTConfig
    from dpt_perception.model.checkpoints import save_model

    torch.manual_seed(0)
    base = out / "weights" / "tiny_random"
    save_model(DPT(DPTConfig.tiny(net_size=[64, 96])).eval(), base)
    return (
        str(base.with_suffix(".safetensors")),
        False,
        f"no weights given and {DEFAULT_OFFICIAL} is not cached: using a RANDOMLY INITIALISED tiny model "
        f"(download real weights with `python -m dpt_perception.inference.weights download "
        f"{DEFAULT_OFFICIAL}` or pass --weights)",
    )


def _latency_stats(probe: OutputProbe, topic: str) -> dict | None:
    got = probe.messages.get(topic) or []
    if not got:
        return None
    ms = np.array([1000.0 * (t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)) for t, m in got])
    return {
        "messages": len(ms),
        "mean_ms": float(ms.mean()),
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
    }


def _diagnostics(probe: OutputProbe) -> dict:
    status = probe.latest_status("dpt_node")
    if status is None:
        return {}
    level = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
    return {"level": level, "message": status.message, **status_values(status)}


def _write_outputs(probe: OutputProbe, out: Path) -> list[str]:
    written = []
    source = probe.latest("/camera/image_raw")
    if source is not None:
        cv2.imwrite(
            str(out / "camera.png"),
            cv2.cvtColor(np.ascontiguousarray(image_to_rgb8(source)), cv2.COLOR_RGB2BGR),
        )
        written.append("camera.png")
    for topic, name, invert in (
        ("/dpt/depth", "depth_color.png", True),
        ("/dpt/depth/relative_inverse", "relative_inverse.png", False),
    ):
        msg = probe.latest(topic)
        if msg is not None:
            colour = colorize_depth(output_image_to_array(msg), invert=invert)
            cv2.imwrite(str(out / name), cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
            written.append(name)
    labels = probe.latest("/dpt/labels/color")
    if labels is not None:
        cv2.imwrite(
            str(out / "labels_color.png"), cv2.cvtColor(output_image_to_array(labels), cv2.COLOR_RGB2BGR)
        )
        written.append("labels_color.png")
    cloud = probe.latest("/dpt/points")
    if cloud is not None:
        fields = cloud_to_arrays(cloud)
        xyz = np.stack([fields["x"], fields["y"], fields["z"]], axis=-1)
        rgb = unpack_rgb_float(fields["rgb"]) if "rgb" in fields else None
        count = write_ply(out / "points.ply", xyz, rgb, fields.get("label"))
        written.append(f"points.ply ({count} points)")
    return written


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights, meaningful, why = choose_weights(args.weights, out)
    print(f"[demo] weights: {why}", flush=True)
    domain_id = args.domain_id if args.domain_id is not None else random.Random().randint(1, 101)
    env = private_ros_env(domain_id)
    print(f"[demo] ROS_DOMAIN_ID={domain_id}; logs in {out}/node.log and {out}/camera.log", flush=True)
    node_args = param_args(
        weights=weights,
        device=args.device,
        diagnostics_period=0.5,
        sparse_depth_topic="camera/sparse_depth",
    )
    if args.net_size:
        node_args += param_args(net_size=args.net_size)
    elif not meaningful:
        node_args += param_args(net_size=[64, 96])
    # Real relative weights: metres by an online fit to the camera's sparse depth (what a robot with a
    # sparse range sensor would do); metric weights: the model's metres. Random weights cannot be fitted.
    node_args += param_args(depth_mode="auto" if meaningful else "fixed")
    camera_args = param_args(
        rate=args.rate,
        width=args.width,
        height=args.height,
        sparse_depth_topic="camera/sparse_depth",
        distinct_frames=4,
    )
    node = camera = probe = None
    started = time.monotonic()
    try:
        probe = OutputProbe(domain_id=domain_id, name="dpt_demo")
        for topic, msg_type in (
            ("/dpt/depth", Image),
            ("/dpt/depth/relative_inverse", Image),
            ("/dpt/depth/camera_info", CameraInfo),
            ("/dpt/labels", Image),
            ("/dpt/labels/color", Image),
            ("/dpt/points", PointCloud2),
            ("/camera/image_raw", Image),
        ):
            probe.subscribe(topic, msg_type, qos_profile_sensor_data)
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        from dpt_perception.msg import ClassTable

        probe.subscribe(
            "/dpt/class_table",
            ClassTable,
            QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
            ),
        )
        node = start_process("dpt_perception.ros.node", node_args, env, out / "node.log")
        camera = start_process("dpt_perception.ros.camera_publisher", camera_args, env, out / "camera.log")
        deadline = started + args.timeout

        def enough() -> bool:
            return node.poll() is not None or probe.count("/dpt/depth/relative_inverse") >= args.frames

        probe.spin_until(enough, max(0.0, deadline - time.monotonic()))
        if node.poll() is not None:
            print(
                f"[demo] dpt_node exited with status {node.returncode}; see {out}/node.log", file=sys.stderr
            )
            print((out / "node.log").read_text(errors="replace")[-2000:], file=sys.stderr)
            return 1
        # Every output topic matches its subscription on its own (best effort: nothing is replayed), and
        # metric depth may start later than relative depth (an online fit needs a few frames): wait a
        # little for each output (and the node's diagnostics) to have arrived at least once.
        def all_outputs() -> bool:
            wanted = ["/dpt/depth", "/dpt/points", "/dpt/depth/camera_info", "/camera/image_raw"]
            if probe.latest("/dpt/class_table") is not None:
                wanted += ["/dpt/labels", "/dpt/labels/color"]
            return all(probe.count(t) >= 1 for t in wanted) and bool(_diagnostics(probe))

        probe.spin_until(all_outputs, max(0.0, min(15.0, deadline - time.monotonic())))
        written = _write_outputs(probe, out)
        summary = {
            "weights": weights,
            "weights_meaningful": meaningful,
            "weights_note": why,
            "frames_received": {t: probe.count(t) for t in probe.messages},
            "latency_receive_minus_stamp": {
                t: _latency_stats(probe, t)
                for t in probe.messages
                if t.startswith("/dpt/") and t != "/dpt/class_table"
            },
            "node_diagnostics": _diagnostics(probe),
            "class_table_classes": len(probe.latest("/dpt/class_table").classes)
            if probe.latest("/dpt/class_table") is not None
            else 0,
            "files": written,
            "elapsed_s": time.monotonic() - started,
        }
        (out / "latency.json").write_text(json.dumps(summary, indent=2))
        _print_summary(summary, out)
        return 0 if probe.count("/dpt/depth/relative_inverse") >= args.frames else 1
    finally:
        stop_process(camera)
        stop_process(node)
        if probe is not None:
            probe.close()


def _print_summary(summary: dict, out: Path) -> None:
    print(f"[demo] wrote to {out}: " + ", ".join(summary["files"]))
    print(f"[demo] weights: {summary['weights']}")
    for topic, stats in summary["latency_receive_minus_stamp"].items():
        if stats:
            print(
                f"[demo] {topic:32s} {stats['messages']:4d} msgs  latency median {stats['median_ms']:7.1f} ms"
                f"  p95 {stats['p95_ms']:7.1f} ms  max {stats['max_ms']:7.1f} ms"
            )
    diag = summary["node_diagnostics"]
    if diag:
        print(
            f"[demo] node: inference latency mean {diag.get('inference latency mean (ms)')} ms on "
            f"{diag.get('device')} {diag.get('precision')}, network input {diag.get('network input (HxW)')}, "
            f"input {diag.get('input rate (Hz)')} Hz, "
            f"dropped {diag.get('frames dropped (replaced by newer)')}, "
            f"depth mode {diag.get('depth mode')}"
        )
    if not summary["weights_meaningful"]:
        print(
            "[demo] NOTE: these weights are random / untrained: the depth, labels and points show that the "
            "pipeline works end to end, but their VALUES ARE NOT MEANINGFUL."
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("dpt_perception.ros.demo", "dpt_demo"), description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    parser.add_argument("--weights", default=None, help="checkpoint name or path for dpt_node")
    parser.add_argument("--frames", type=int, default=10, help="stop after this many outputs (default 10)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument("--rate", type=float, default=5.0, help="camera rate in Hz (default 5)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument(
        "--net-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="inference resolution (default: the model's; [64, 96] for the random tiny model)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--domain-id", type=int, default=None, help="ROS domain (default: a random private one)"
    )
    args = parser.parse_args(argv)
    restore_interrupts()
    try:
        return run(args)  # stops the node and camera processes on any exit
    except KeyboardInterrupt:
        print("[demo] interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
