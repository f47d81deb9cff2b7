"""End-to-end latency of dpt_node: its default engine (precision/backend auto) vs eager fp32.

    python bench/bench_node_latency.py [--frames 40] [--warmup 5] [--weights demo | --config hybrid]
                                       [--width 640 --height 480] [--net-size H W]

Starts the installed `dpt_node` (what `ros2 run dpt_perception dpt_node` runs: a separate process
on a private ROS domain) twice with the same weights: once with its defaults (precision auto,
backend auto: `inference.autotune` measures the candidates at start-up, or reuses its cached
choice) and once with `precision:=fp32 backend:=eager`. Weights: the bundled demo model
(`weights:=demo`), `--weights` (a file or preset name), or `--config NAME` for a random model of
that architecture (`hybrid` = DPT-Hybrid with both heads, saved to a temporary file).

Both nodes run at once, each in its own namespace (/run0: default, /run1: eager fp32), and this
process sends W x H rgb8 frames to them in turn, one frame in flight at a time: a frame is
stamped just before it is published and the next one goes out when the /dpt/depth with that stamp
has arrived here. So no frame waits behind another, each node computes while the other waits, a
change of load on a shared machine hits both alike, and the latency is the node's whole path (DDS
in, decode, preprocess, forward, post-processing, publish, DDS out). Only /dpt/depth is subscribed: the node
computes only the outputs somebody subscribes to. After --warmup frames, --frames are timed.
Prints p50/p95 per run, the ratio default / eager fp32 of each, the CPU model and the engine the
default run chose (its log line). DPT_PERCEPTION_ENGINE_CANDIDATES is removed from the nodes'
environment so that "auto" is the node's real choice on this machine.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dpt_perception.inference.autotune import CANDIDATES_ENV, cpu_model  # noqa: E402
from dpt_perception.inference.backends.model_configs import CONFIG_NAMES, config_by_name  # noqa: E402
from dpt_perception.inference.sample_frames import sample_frames  # noqa: E402
from dpt_perception.ros.image_conversion import rgb8_to_image  # noqa: E402
from dpt_perception.ros.probe import (  # noqa: E402
    OutputProbe,
    installed_executable,
    param_args,
    private_ros_env,
    start_process,
    stop_process,
)

RUNS = {"default (auto)": {}, "eager fp32": {"precision": "fp32", "backend": "eager"}}


class NodeRun:
    """One dpt_node process in its own namespace, and the frames sent to it."""

    def __init__(self, name: str, namespace: str, overrides: dict, args, weights: str, env: dict,
                 probe: OutputProbe, tmp: Path):
        self.name, self.probe, self.args = name, probe, args
        self.log_path = tmp / f"node_{namespace}.log"
        self.arrivals: dict[tuple[int, int], float] = {}
        probe.node.create_subscription(Image, f"/{namespace}/dpt/depth", self._on_depth,
                                       qos_profile_sensor_data)
        self.publisher = probe.node.create_publisher(Image, f"/{namespace}/camera/image_raw",
                                                     qos_profile_sensor_data)
        params = {"weights": weights, "device": "cpu", **overrides}
        if args.net_size:
            params["net_size"] = list(args.net_size)
        self.process = start_process(installed_executable("dpt_node"),
                                     ["-r", f"__ns:=/{namespace}", *param_args(**params)], env, self.log_path)
        self.latencies: list[float] = []

    def _on_depth(self, msg: Image) -> None:
        self.arrivals.setdefault((msg.header.stamp.sec, msg.header.stamp.nanosec), time.time())

    def send(self, rgb: np.ndarray, wait: float) -> bool:
        """Publish one frame stamped now; True (its latency recorded) when its depth came within `wait` s."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name}: dpt_node exited ({self.process.returncode}):\n"
                               + self.log_path.read_text(errors="replace")[-2000:])
        msg = rgb8_to_image(rgb)
        msg.header.frame_id = "camera_optical_frame"
        msg.header.stamp = self.probe.node.get_clock().now().to_msg()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.publisher.publish(msg)
        if not self.probe.spin_until(lambda: key in self.arrivals, wait):
            return False
        self.latencies.append(1e3 * (self.arrivals[key] - (key[0] + key[1] * 1e-9)))
        return True

    def wait_until_serving(self, rgb: np.ndarray) -> None:
        """A frame a second until any is answered (start-up, auto's measurement, discovery), then one
        more answered with nothing else in flight; a clear error after --startup-timeout."""
        deadline = time.monotonic() + self.args.startup_timeout
        while not self.arrivals:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no /dpt/depth within {self.args.startup_timeout:.0f} s; "
                                   "node log:\n" + self.log_path.read_text(errors="replace")[-2000:])
            self.send(rgb, 1.0)  # a frame slower than that is answered later: arrivals fills anyway
        if not self.send(rgb, self.args.frame_timeout):
            raise RuntimeError(f"{self.name}: no /dpt/depth within {self.args.frame_timeout:.0f} s "
                               "of a frame")
        self.latencies.clear()

    def summary(self) -> dict:
        timed = np.array(self.latencies[self.args.warmup:])
        text = self.log_path.read_text(errors="replace")
        lines = [line.split("]: ", 1)[-1] for line in text.splitlines() if "configured:" in line
                 or "]: engine " in line]
        return {"p50": float(np.percentile(timed, 50)), "p95": float(np.percentile(timed, 95)),
                "mean": float(timed.mean()), "n": len(timed), "log": lines}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames after the node serves")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--net-size", type=int, nargs=2, metavar=("H", "W"),
                        help="node net_size (default: the model's own)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", default="demo", help="node weights (default: the bundled demo model)")
    source.add_argument("--config", choices=CONFIG_NAMES, help="random model of this architecture instead")
    parser.add_argument("--startup-timeout", type=float, default=600.0,
                        help="seconds to wait for the first output (auto measures engines first)")
    parser.add_argument("--frame-timeout", type=float, default=60.0, help="seconds to wait for one output")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: stop the nodes on the way out
    if args.frames < 1 or args.warmup < 0:
        parser.error("--frames must be >= 1 and --warmup >= 0")

    tmp = Path(tempfile.mkdtemp(prefix="dpt_node_latency_"))
    weights = args.weights
    if args.config:
        import torch

        from dpt_perception.model import DPT
        from dpt_perception.model.checkpoints import save_model

        torch.manual_seed(0)
        save_model(DPT(config_by_name(args.config)).eval(), tmp / args.config)
        weights = str(tmp / f"{args.config}.safetensors")
    env = private_ros_env(random.Random().randint(1, 101), log_dir=tmp / "ros_logs")
    env.pop(CANDIDATES_ENV, None)  # the node's own choice, not a pinned candidate list
    print(f"CPU: {cpu_model()}; frames {args.width}x{args.height}, weights {args.config or weights}, "
          f"{args.frames} timed frames after {args.warmup} warm-up, one frame in flight")
    frames = [rgb for rgb, *_ in sample_frames(4, args.height, args.width)]
    probe = OutputProbe(domain_id=int(env["ROS_DOMAIN_ID"]), name="latency_probe")
    runs = []
    try:
        for i, (name, overrides) in enumerate(RUNS.items()):
            runs.append(NodeRun(name, f"run{i}", overrides, args, weights, env, probe, tmp))
        for run in runs:
            run.wait_until_serving(frames[0])
        # Frames alternate between the nodes, one in flight at a time: each computes while the
        # other waits, and a change of load on a shared machine hits both runs alike.
        for i in range(args.warmup + args.frames):
            for run in runs:
                if not run.send(frames[i % len(frames)], args.frame_timeout):
                    raise RuntimeError(f"{run.name}: no /dpt/depth within {args.frame_timeout:.0f} s "
                                       "of a frame; node log:\n"
                                       + run.log_path.read_text(errors="replace")[-2000:])
        results = {run.name: run.summary() for run in runs}
    finally:
        for run in runs:
            stop_process(run.process)
        probe.close()
    reference = results["eager fp32"]
    for name, r in results.items():
        print(f"{name:15s} p50 {r['p50']:8.1f} ms  p95 {r['p95']:8.1f} ms  mean {r['mean']:8.1f} ms  "
              f"({r['n']} frames)")
        for line in r["log"]:
            print(f"  node log: {line}")
    default = results["default (auto)"]
    print(f"ratio default / eager fp32: p50 {default['p50'] / reference['p50']:.2f}x, "
          f"p95 {default['p95'] / reference['p95']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
