"""Load: several cameras at full rate into ONE dpt_node over real DDS, for a fixed time.

    python bench/stress_load.py [--cameras 4] [--rate 30] [--width 640 --height 480] [--seconds 60]

Each camera is its own `dpt_camera_publisher` process (namespace /camN); the node serves all of
them with one model (latest frame per camera, batched). This process subscribes to every
camera's depth and labels (so the node computes them), to /diagnostics, and to camera 0's raw
images (to measure what DDS delivery itself costs on this machine). It prints:
  - the node's resident memory (VmRSS) at the end of the warm-up and its growth afterwards;
  - output age per camera = arrival time of a depth image here - the stamp of the camera frame it
    was computed from (the latest-frame-wins contract keeps it bounded instead of growing);
  - per camera from /diagnostics: frames received, processed, dropped (replaced by newer ones),
    rejected, and whether the counts add up.
Checks (exit status 1 if one fails): RSS growth <= --max-growth-mib after warm-up; every camera
gets outputs; the counters add up (received = processed + dropped + skipped + bad, up to the one
frame per camera still in flight); the drop counter is on /diagnostics; no worker errors; and,
the output age does not grow over the run (the median of the last third stays within 2x the
first third + one period; a queue would grow it steadily) and, unless --no-age-check, the p95
output age <= 2 x the slowest inference batch + one camera period + 2 x the p99 DDS delivery time
measured in the same run (sensitive to other load on the machine: the load average is printed).
ROS_DOMAIN_ID is taken from the environment when set, else random.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def camera_diagnostics(probe, node_name: str) -> dict[str, dict]:
    """Newest diagnostics values per camera key of `node_name`."""
    out: dict[str, dict] = {}
    for _, array in reversed(probe.messages.get("/diagnostics") or []):
        for status in array.status:
            if status.name.startswith(f"{node_name}: "):
                key = status.name.split(": ", 1)[1]
                out.setdefault(key, {kv.key: kv.value for kv in status.values})
    return out


def diagnostics_maxima(probe, node_name: str, key: str, since: float) -> dict[str, float]:
    """Per camera, the largest value of `key` over every diagnostics message received after `since`."""
    out: dict[str, float] = {}
    for received, array in probe.messages.get("/diagnostics") or []:
        if received < since:
            continue
        for status in array.status:
            if status.name.startswith(f"{node_name}: "):
                camera = status.name.split(": ", 1)[1]
                for kv in status.values:
                    if kv.key == key:
                        try:
                            value = float(kv.value)
                        except ValueError:
                            continue
                        if np.isfinite(value):
                            out[camera] = max(out.get(camera, 0.0), value)
    return out


def stamp_seconds(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Several cameras at full rate into one dpt_node over real DDS: memory, age, drops.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second per camera")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time after the warm-up")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the memory baseline")
    parser.add_argument("--net-size", type=int, nargs=2, default=[128, 160], metavar=("H", "W"))
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    parser.add_argument("--no-age-check", action="store_true", help="report output ages without judging them")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the first outputs")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cameras < 1 or args.rate <= 0 or args.seconds <= 0:
        print("--cameras >= 1, --rate > 0 and --seconds > 0 are required", file=sys.stderr)
        return 2

    import torch
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from dpt_perception.model import DPT, DPTConfig
    from dpt_perception.model.checkpoints import save_model
    from dpt_perception.ros.probe import (
        OutputProbe,
        param_args,
        private_ros_env,
        process_rss_mib,
        start_process,
        stop_process,
    )

    tmp = Path(tempfile.mkdtemp(prefix="dpt_stress_load_"))
    torch.manual_seed(0)
    save_model(DPT(DPTConfig.tiny(num_classes=5, net_size=list(args.net_size))).eval(), tmp / "tiny")
    env = private_ros_env(log_dir=tmp / "ros_logs")
    domain = int(env["ROS_DOMAIN_ID"])
    names = [f"cam{i}" for i in range(args.cameras)]
    cameras_param = "[" + ", ".join(f"'/{n}'" for n in names) + "]"
    several = args.cameras > 1
    node = probe = None
    cams = []
    try:
        probe = OutputProbe(domain_id=domain, name="stress_load_probe")
        probe.subscribe("/diagnostics", DiagnosticArray, 20)
        depth_topics = {n: (f"/dpt/{n}/depth" if several else "/dpt/depth") for n in names}
        for n in names:
            probe.subscribe(depth_topics[n], Image, qos_profile_sensor_data)
            probe.subscribe(depth_topics[n].replace("/depth", "/labels"), Image, qos_profile_sensor_data)
        probe.subscribe(f"/{names[0]}/camera/image_raw", Image, qos_profile_sensor_data)
        node = start_process(
            "dpt_perception.ros.node",
            [
                "-r",
                "__node:=stress_load",
                *param_args(
                    weights=tmp / "tiny.safetensors",
                    device="cpu",
                    depth_mode="fixed",
                    net_size=args.net_size,
                    cameras=cameras_param,
                    diagnostics_period=1.0,
                    max_batch=args.cameras,
                ),
            ],
            env,
            tmp / "node.log",
        )
        for n in names:
            cams.append(
                start_process(
                    "dpt_perception.ros.camera_publisher",
                    [
                        "-r",
                        f"__ns:=/{n}",
                        "-r",
                        f"__node:=camera_{n}",
                        *param_args(
                            rate=args.rate,
                            width=args.width,
                            height=args.height,
                            distinct_frames=4,
                            frame_id=f"{n}_optical",
                        ),
                    ],
                    env,
                    tmp / f"camera_{n}.log",
                )
            )
        if not probe.spin_until(
            lambda: all(probe.count(t) >= 2 for t in depth_topics.values()), args.timeout
        ):
            print(
                "not every camera produced outputs in time; node log:\n"
                + (tmp / "node.log").read_text(errors="replace")[-3000:]
            )
            return 1
        probe.spin_for(args.warmup)
        for topic in probe.messages:
            if topic != "/diagnostics":
                probe.messages[topic].clear()
        start_diag = camera_diagnostics(probe, "stress_load")
        baseline = process_rss_mib(node.pid)
        t_measure = time.time()
        rss = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            probe.spin_for(1.0)
            rss.append(process_rss_mib(node.pid))
        measured = time.time() - t_measure
        load = os.getloadavg()
        for cam in cams:  # stop the input, let the node drain, then read the final counters
            stop_process(cam)
        stopped = time.time() - t_measure
        cams = []
        probe.spin_for(3.0)
        diag = camera_diagnostics(probe, "stress_load")
        latency_max = diagnostics_maxima(probe, "stress_load", "inference latency max (ms)", t_measure)
        node_age_max = diagnostics_maxima(probe, "stress_load", "output age max (ms)", t_measure)
        rss = np.array(rss)
        growth = float(np.nanmax(rss) - baseline)
        quarter = max(1, len(rss) // 4)
        trend = float(rss[-quarter:].mean() - rss[:quarter].mean())
        delivery = np.array(
            [
                1000.0 * (t - stamp_seconds(m.header))
                for t, m in probe.messages[f"/{names[0]}/camera/image_raw"]
                if t <= t_measure + measured
            ]
        )
        transport = 2.0 * float(np.percentile(delivery, 99)) if delivery.size else 0.0
        period = 1000.0 / args.rate
        ok = True
        print(
            f"stress_load: {args.cameras} cameras x {args.rate:.0f} Hz x {args.width}x{args.height} for "
            f"{args.seconds:.0f} s (after {args.warmup:.0f} s warm-up) into one node, network input "
            f"{args.net_size[0]}x{args.net_size[1]}, {os.cpu_count()} CPUs, "
            f"load average {load[0]:.1f} / {load[1]:.1f}"
        )
        print(
            f"node RSS: {baseline:.1f} MiB after warm-up, max {np.nanmax(rss):.1f} MiB, growth "
            f"{growth:+.1f} MiB (limit {args.max_growth_mib:.0f}); trend last-first quarter {trend:+.1f} MiB"
        )
        if delivery.size:
            print(
                f"DDS delivery of {args.width}x{args.height} rgb8 to a subscriber ({names[0]}): median "
                f"{np.median(delivery):.1f} ms, p99 {np.percentile(delivery, 99):.1f} ms, "
                f"{delivery.size / args.seconds:.1f} Hz received"
            )
        if growth > args.max_growth_mib:
            ok = False
            print("FAILED: memory grew more than the limit")
        for n in names:
            values, first = diag.get(n, {}), start_diag.get(n, {})
            if "frames dropped (replaced by newer)" not in values:
                ok = False
                print(f"[{n}] FAILED: no drop counter on /diagnostics ({sorted(values)})")
                continue

            def count(key, values=values, first=first):
                return int(values.get(key, 0)) - int(first.get(key, 0))

            received, processed = count("frames received"), count("frames processed")
            dropped, skipped, bad = (
                count("frames dropped (replaced by newer)"),
                count("frames skipped (no subscribers)"),
                count("bad messages"),
            )
            total = {
                k: int(values.get(k, 0))
                for k in (
                    "frames received",
                    "frames processed",
                    "frames dropped (replaced by newer)",
                    "frames skipped (no subscribers)",
                    "bad messages",
                )
            }
            unaccounted = total["frames received"] - sum(
                v for k, v in total.items() if k != "frames received"
            )
            # Only what arrived while this process was spinning (stopping the cameras blocks it).
            got = [(t, m) for t, m in probe.messages[depth_topics[n]] if t <= t_measure + measured]
            ages = np.array([1000.0 * (t - stamp_seconds(m.header)) for t, m in got])
            print(
                f"[{n}] in {stopped:.0f} s: received {received} ({received / stopped:.1f} Hz), "
                f"processed {processed} ({processed / stopped:.1f} Hz), dropped {dropped}, "
                f"skipped {skipped}, bad {bad}; whole run: unaccounted {unaccounted}; "
                f"worker errors {values.get('worker errors')}"
            )
            # Latest frame wins: a frame waits at most one batch in its mailbox, then takes one batch.
            bound = 2.0 * latency_max.get(n, float("nan")) + period + transport
            third = max(1, ages.size // 3)
            growing = ages.size >= 6 and np.median(ages[-third:]) > 2.0 * np.median(ages[:third]) + period
            if ages.size:
                print(
                    f"[{n}] output age: median {np.median(ages):.0f} ms, "
                    f"p95 {np.percentile(ages, 95):.0f} ms, "
                    f"max {ages.max():.0f} ms; first/last third median {np.median(ages[:third]):.0f} / "
                    f"{np.median(ages[-third:]):.0f} ms; node-internal age max "
                    f"{node_age_max.get(n, float('nan')):.0f}"
                    f" ms; bound for p95 {bound:.0f} ms = 2 x batch latency max "
                    f"{latency_max.get(n, float('nan')):.0f} + period {period:.0f} "
                    f"+ transport {transport:.0f}; "
                    f"{ages.size} outputs ({ages.size / measured:.1f} Hz) here"
                )
            problems = []
            if not ages.size:
                problems.append("no outputs")
            if not 0 <= unaccounted <= 1:
                problems.append(f"{unaccounted} frames unaccounted for")
            if values.get("worker errors") != "0":
                problems.append(f"worker errors {values.get('worker errors')}")
            if not args.no_age_check and ages.size and np.percentile(ages, 95) > bound:
                problems.append(
                    f"output age p95 {np.percentile(ages, 95):.0f} ms over the bound {bound:.0f} ms"
                )
            if growing:
                problems.append("output age grows over the run (frames are queued, not replaced)")
            if problems:
                ok = False
                print(f"[{n}] FAILED: {'; '.join(problems)}")
        print(f"node alive: {node.poll() is None}")
        ok = ok and node.poll() is None
        print("PASS" if ok else f"FAIL (node logs kept in {tmp})")
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0 if ok else 1
    finally:
        for cam in cams:
            stop_process(cam)
        stop_process(node)
        if probe is not None:
            probe.close()


if __name__ == "__main__":
    sys.exit(main())
