"""Bad-message storm over real DDS: thousands of malformed Image / CompressedImage / CameraInfo
messages into two dpt_node processes (raw and compressed transport), then one good frame.

    python bench/stress_bad_messages.py [--messages 10000] [--rate 300] [--seed 0]

This process is the publisher (its own rclpy context) and also subscribes to the nodes' outputs,
so the nodes really decode every frame they take. Messages are drawn at random from these kinds:
  Image           valid (every accepted encoding, padded rows, trailing bytes, both byte orders),
                  wrong step, truncated data, unknown / lying encoding, zero or huge sizes,
                  odd-width YUV, random is_bigendian values
  CompressedImage valid png / jpeg, truncated, bit-flipped, random bytes, empty, lying format,
                  a PNG header claiming 70000 x 70000 pixels (decompression bomb)
  CameraInfo      NaN / Inf / zero / negative intrinsics, missing, other or huge declared size
Afterwards a good CameraInfo + frame must come out right (depth and labels equal an in-process
PerceptionPipeline on the same pixels, the point cloud follows the pinhole formula) and both nodes must
still be alive. Prints the figures; exit status 0 only when every check holds:
  - every frame a node received is accounted for on /diagnostics (processed, rejected as a bad
    message, or dropped because a newer one replaced it) and no error escaped to the
    inference worker ("worker errors" stays 0), no traceback in the node logs;
  - the "dropping bad image" warnings are throttled (at most one per 5 s per camera, + 1);
  - the good frame is processed correctly afterwards; the nodes still run.
ROS_DOMAIN_ID is taken from the environment when set (tests give each run its own), else random.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

U32_MAX = 2**32 - 1
# (bytes per channel, channels) of the encodings the node accepts.
LAYOUT = {
    "rgb8": (1, 3),
    "bgr8": (1, 3),
    "rgba8": (1, 4),
    "bgra8": (1, 4),
    "mono8": (1, 1),
    "mono16": (2, 1),
    "uyvy": (1, 2),
    "yuv422": (1, 2),
    "yuyv": (1, 2),
    "yuv422_yuy2": (1, 2),
}
LYING_ENCODINGS = ["", "RGB8", "rgb16", "8UC3", "32FC1", "16UC1", "bayer_rggb8", "jpeg", "rgb8 ", "nv12"]
IMAGE_KINDS = (
    "valid",
    "valid_padded",
    "wrong_step",
    "truncated",
    "oversized",
    "unknown_encoding",
    "lying_encoding",
    "extreme_valid",
    "zero_size",
    "huge_size",
    "odd_yuv",
    "bigendian_flag",
)
COMPRESSED_KINDS = ("valid", "truncated", "bitflip", "random", "empty", "lying_format", "bomb")
INFO_KINDS = ("nan", "zero", "inf", "negative", "missing_size", "other_size", "huge_size")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height with a few bytes of IDAT (a decompression bomb shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


class BadMessageFactory:
    """Deterministic stream of malformed (and some valid) messages; counts what it made."""

    def __init__(self, seed: int, max_side: int = 96):
        self.rng = np.random.default_rng(seed)
        self.max_side = max_side
        self.made: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.made[key] = self.made.get(key, 0) + 1

    def _pixels(self, h: int, w: int) -> np.ndarray:
        return self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def image(self):
        from sensor_msgs.msg import Image

        kind = str(self.rng.choice(IMAGE_KINDS))
        self._count(f"Image/{kind}")
        rng = self.rng
        encoding = str(rng.choice(sorted(LAYOUT)))
        itemsize, channels = LAYOUT[encoding]
        h = int(rng.integers(1, self.max_side))
        w = int(rng.integers(1, self.max_side)) * (2 if encoding.startswith(("uyvy", "yuv", "yuyv")) else 1)
        step = w * itemsize * channels
        big = int(rng.integers(0, 2))
        if kind == "valid_padded":
            step += int(rng.integers(1, 9)) * itemsize
        size = step * h
        if kind == "wrong_step":
            step = int(rng.choice([0, 1, max(step - 1, 0), step // 2, U32_MAX]))
        elif kind == "truncated":
            size = int(rng.integers(0, size))
        elif kind == "oversized":
            size += int(rng.integers(1, 5000))
        elif kind == "unknown_encoding":
            encoding = str(rng.choice(LYING_ENCODINGS))
        elif kind == "lying_encoding":  # data laid out for another accepted encoding
            encoding = str(rng.choice([e for e in LAYOUT if LAYOUT[e] != (itemsize, channels)]))
        elif kind == "extreme_valid":  # decodable, but 1 pixel high or wide: resizing must cope
            h, w = (int(v) for v in rng.choice([(1, 1), (1, 4000), (4000, 1), (2, 3000), (3000, 2)]))
            if encoding in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2"):
                w = max(2, w - w % 2)
            step = w * itemsize * channels
            size = step * h
        elif kind == "zero_size":
            h, w = (0, w) if rng.integers(0, 2) else (h, 0)
        elif kind == "huge_size":
            h = int(rng.choice([2**31, U32_MAX, 100000]))
            w = int(rng.choice([w, U32_MAX, 2**16]))
            size = int(rng.integers(0, 4096))
        elif kind == "odd_yuv":
            encoding, w = str(rng.choice(["uyvy", "yuyv", "yuv422", "yuv422_yuy2"])), w | 1
            step = 2 * w
            size = step * h
        elif kind == "bigendian_flag":
            big = int(rng.integers(2, 256))
        msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=min(step, U32_MAX))
        msg.data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        return msg

    def compressed(self):
        import cv2
        from sensor_msgs.msg import CompressedImage

        kind = str(self.rng.choice(COMPRESSED_KINDS))
        self._count(f"CompressedImage/{kind}")
        rng = self.rng
        fmt = str(rng.choice(["png", "jpeg"]))
        h, w = int(rng.integers(1, self.max_side)), int(rng.integers(1, self.max_side))
        ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", self._pixels(h, w))
        payload = buf.tobytes()
        if kind == "truncated":
            payload = payload[: int(rng.integers(0, len(payload)))]
        elif kind == "bitflip":
            data = bytearray(payload)
            for _ in range(int(rng.integers(1, 10))):
                data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
            payload = bytes(data)
        elif kind == "random":
            payload = rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
        elif kind == "empty":
            payload = b""
        elif kind == "lying_format":
            fmt = str(rng.choice(["tiff", "", "rgb8", "bmp"]))
        elif kind == "bomb":
            payload = png_header_only(int(rng.choice([70000, 2**31 - 1])), int(rng.choice([70000, 40000])))
        msg = CompressedImage(format=fmt)
        msg.data = payload
        return msg

    def camera_info(self):
        from sensor_msgs.msg import CameraInfo

        kind = str(self.rng.choice(INFO_KINDS))
        self._count(f"CameraInfo/{kind}")
        rng = self.rng
        fx = fy = float(rng.uniform(50, 500))
        cx, cy = float(rng.uniform(0, 100)), float(rng.uniform(0, 100))
        h, w = int(rng.integers(1, self.max_side)), int(rng.integers(1, self.max_side))
        if kind == "nan":
            fx, cx = float("nan"), float(rng.choice([cx, float("nan")]))
        elif kind == "zero":
            fx = fy = 0.0
        elif kind == "inf":
            fy = float("inf")
        elif kind == "negative":
            fx = -fx
        elif kind == "missing_size":
            h = w = 0
        elif kind == "other_size":
            h, w = int(rng.integers(1, 5000)), int(rng.integers(1, 5000))
        elif kind == "huge_size":
            h = w = U32_MAX
        info = CameraInfo(height=h, width=w, distortion_model="plumb_bob")
        info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        info.p = (
            [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0] if rng.integers(0, 2) else [0.0] * 12
        )
        return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Send malformed Image/CompressedImage/CameraInfo messages over real DDS into two "
        "dpt_node "
        "processes, then check a good frame still comes out right.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--messages", type=int, default=10000, help="bad/random image messages in total (default 10000)"
    )
    parser.add_argument(
        "--rate", type=float, default=300.0, help="messages per second, all topics (default 300)"
    )
    parser.add_argument("--info-every", type=int, default=4, help="one bad CameraInfo per this many images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int, default=96, help="largest side of generated images")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for nodes / outputs")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.messages < 1 or args.rate <= 0:
        print("--messages must be >= 1 and --rate > 0", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(1)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.model import DPT, DPTConfig
    from dpt_perception.model.checkpoints import load_model, save_model
    from dpt_perception.ros.image_conversion import output_image_to_array, rgb8_to_compressed, rgb8_to_image
    from dpt_perception.ros.pointcloud2 import cloud_to_arrays
    from dpt_perception.ros.probe import (
        OutputProbe,
        param_args,
        private_ros_env,
        process_rss_mib,
        start_process,
        status_values,
        stop_process,
    )

    tmp = Path(tempfile.mkdtemp(prefix="dpt_stress_bad_"))
    torch.manual_seed(args.seed)
    save_model(DPT(DPTConfig.tiny(num_classes=5, net_size=[64, 64])).eval(), tmp / "tiny")
    weights = tmp / "tiny.safetensors"
    env = private_ros_env(log_dir=tmp / "ros_logs")
    domain = int(env["ROS_DOMAIN_ID"])

    common = param_args(
        weights=weights, depth_mode="fixed", device="cpu", net_size=[64, 64], diagnostics_period=0.5
    )
    setups = {
        "raw": dict(
            name="stress_raw",
            ns="dpt_raw",
            image="/cam_raw/image",
            info="/cam_raw/camera_info",
            transport="raw",
            msg_type=Image,
        ),
        "compressed": dict(
            name="stress_compressed",
            ns="dpt_c",
            image="/cam_c/image",
            info="/cam_c/camera_info",
            transport="compressed",
            msg_type=CompressedImage,
        ),
    }
    procs, probe = {}, None
    t_start = time.monotonic()
    try:
        probe = OutputProbe(domain_id=domain, name="stress_bad_messages")
        probe.subscribe("/diagnostics", DiagnosticArray, 50)
        for key, s in setups.items():
            procs[key] = start_process(
                "dpt_perception.ros.node",
                [
                    "-r",
                    f"__node:={s['name']}",
                    *common,
                    *param_args(
                        image_topic=s["image"],
                        camera_info_topic=s["info"],
                        output_namespace=s["ns"],
                        image_transport=s["transport"],
                    ),
                ],
                env,
                tmp / f"node_{key}.log",
            )
            for out, msg_type in (
                ("depth/relative_inverse", Image),
                ("labels", Image),
                ("points", PointCloud2),
            ):
                probe.subscribe(f"/{s['ns']}/{out}", msg_type, qos_profile_sensor_data)
        pubs = {}
        for key, s in setups.items():
            topic = s["image"] + ("/compressed" if s["transport"] == "compressed" else "")
            pubs[key] = (
                probe.node.create_publisher(s["msg_type"], topic, qos_profile_sensor_data),
                probe.node.create_publisher(CameraInfo, s["info"], qos_profile_sensor_data),
            )

        def subscribed() -> bool:
            return all(pub.get_subscription_count() > 0 for pair in pubs.values() for pub in pair) and all(
                status_values(probe.latest_status(s["name"] + ":")) for s in setups.values()
            )

        if not probe.spin_until(subscribed, args.timeout):
            for key, proc in procs.items():
                print(
                    f"node {key} did not come up (exit {proc.poll()}); log:\n"
                    + (tmp / f"node_{key}.log").read_text(errors="replace")[-3000:]
                )
            return 1
        # The nodes skip frames nobody wants: wait until they see our output subscriptions.
        probe.spin_for(1.0)
        rss_before = {k: process_rss_mib(p.pid) for k, p in procs.items()}

        factory = BadMessageFactory(args.seed, args.max_side)
        period = 1.0 / args.rate
        sent = {"raw": 0, "compressed": 0, "camera_info": 0}
        t0 = time.monotonic()
        next_time = t0
        for i in range(args.messages):
            key = "raw" if i % 2 == 0 else "compressed"
            image_pub, info_pub = pubs[key]
            image_pub.publish(factory.image() if key == "raw" else factory.compressed())
            sent[key] += 1
            if i % args.info_every == 0:
                info_pub.publish(factory.camera_info())
                sent["camera_info"] += 1
            next_time += period
            delay = next_time - time.monotonic()
            if delay > 0:
                probe.spin_for(delay)
            elif i % 50 == 0:
                probe.executor.spin_once(timeout_sec=0)
        storm_s = time.monotonic() - t0
        probe.spin_for(2.0)  # let the nodes finish what they hold

        # ---- a good CameraInfo and frame afterwards -----------------------------------------------
        h, w = 60, 80
        rgb = np.random.default_rng(args.seed + 1).integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb[:, : w // 2] //= 3  # some structure for the network
        fx = fy = 70.0
        cx, cy = w / 2 - 0.5, h / 2 - 0.5
        good_info = CameraInfo(height=h, width=w, distortion_model="plumb_bob")
        good_info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        good_info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        for _ in range(5):
            for _, info_pub in pubs.values():
                info_pub.publish(good_info)
            probe.spin_for(0.1)
        predictor = PerceptionPipeline(load_model(weights), device="cpu", net_size=(64, 64))
        results, good_sent = {}, {}
        for key, s in setups.items():
            image_pub, info_pub = pubs[key]
            ns = s["ns"]
            topics = [f"/{ns}/depth/relative_inverse", f"/{ns}/labels", f"/{ns}/points"]
            # PNG is lossless: both transports must reproduce the in-process prediction.
            msg = rgb8_to_image(rgb) if key == "raw" else rgb8_to_compressed(rgb, "png")
            msg.header.frame_id = f"good_{key}"
            deadline = time.monotonic() + args.timeout
            found = None
            good_sent[key] = 0
            while time.monotonic() < deadline and found is None:
                msg.header.stamp.sec += 1
                info_pub.publish(good_info)
                image_pub.publish(msg)
                good_sent[key] += 1
                stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                probe.spin_until(
                    lambda stamp=stamp, topics=topics: all(
                        any(
                            (m.header.stamp.sec, m.header.stamp.nanosec) == stamp
                            for _, m in probe.messages[t]
                        )
                        for t in topics
                    ),
                    2.0,
                )
                outs = {}
                for t in topics:
                    for _, m in probe.messages[t]:
                        if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp:
                            outs[t] = m
                if len(outs) == len(topics):
                    found = outs
            if found is None:
                results[key] = "no output for the good frame"
                continue
            expected = predictor.infer_image(rgb)
            relative = output_image_to_array(found[topics[0]])
            labels = output_image_to_array(found[topics[1]])
            cloud = cloud_to_arrays(found[topics[2]])
            # fixed mode, scale 1, shift 0: z = 1 / x, and x <= 1e-8 means "too far" (+Inf: no point)
            rel64 = relative.astype(np.float64)
            z_expected = np.full(rel64.shape, np.nan)
            np.divide(1.0, rel64, out=z_expected, where=rel64 > 1e-8)
            v, u = np.mgrid[0:h, 0:w]
            problems = []
            if found[topics[0]].header.frame_id != f"good_{key}":
                problems.append("frame_id not copied")
            if not np.allclose(relative, expected.depth, rtol=1e-3, atol=1e-5):
                problems.append(
                    f"depth differs from the predictor (max {np.abs(relative - expected.depth).max():.3g})"
                )
            agree = float((labels == expected.labels).mean())
            if agree < 0.99:
                problems.append(f"labels agree on {agree:.1%}")
            if not np.isfinite(z_expected).any() or not np.allclose(
                cloud["z"], z_expected, rtol=1e-4, equal_nan=True
            ):
                problems.append("cloud z is not the metric depth")
            if not np.allclose(cloud["x"], (u - cx) / fx * z_expected, rtol=1e-3, atol=1e-4, equal_nan=True):
                problems.append("cloud x does not follow the good CameraInfo")
            results[key] = "; ".join(problems) or "ok"
        probe.spin_for(1.5)  # one more diagnostics round

        # ---- figures and checks -----------------------------------------------------------------
        ok = True
        print(
            f"stress_bad_messages: {args.messages} image messages + {sent['camera_info']} CameraInfo in "
            f"{storm_s:.1f} s ({(args.messages + sent['camera_info']) / storm_s:.0f} msg/s), "
            f"seed {args.seed}, "
            f"{os.cpu_count()} CPUs"
        )
        print("kinds sent: " + ", ".join(f"{k} {v}" for k, v in sorted(factory.made.items())))
        for key, s in setups.items():
            d = status_values(probe.latest_status(s["name"] + ":"))
            log = (tmp / f"node_{key}.log").read_text(errors="replace")
            received = int(d.get("frames received", -1))
            processed = int(d.get("frames processed", -1))
            bad = int(d.get("bad messages", -1))
            dropped = int(d.get("frames dropped (replaced by newer)", -1))
            skipped = int(d.get("frames skipped (no subscribers)", -1))
            worker_errors = int(d.get("worker errors", -1))
            warnings = log.count("dropping bad image")
            tracebacks = log.count("Traceback")
            elapsed = time.monotonic() - t_start
            alive = procs[key].poll() is None
            rss_after = process_rss_mib(procs[key].pid)
            print(
                f"[{key}] sent {sent[key]} + {good_sent.get(key, 0)} good, node received {received}: "
                f"processed {processed}, "
                f"rejected as bad {bad}, dropped (replaced by newer) {dropped}, skipped {skipped}; "
                f"worker errors {worker_errors}; "
                f"lost in DDS {sent[key] + good_sent.get(key, 0) - received} (best effort)"
            )
            print(
                f"[{key}] 'dropping bad image' log lines {warnings} in {elapsed:.0f} s (throttled to 1/5 s); "
                f"tracebacks {tracebacks}; RSS {rss_before[key]:.0f} -> {rss_after:.0f} MiB; alive {alive}; "
                f"good frame: {results.get(key)}"
            )
            if d.get("last bad message"):
                print(f"[{key}] last bad message: {d['last bad message'][:160]}")
            checks = {
                "alive": alive,
                "accounted": received == processed + bad + dropped + skipped and received > 0,
                "no worker errors": worker_errors == 0,
                "no tracebacks": tracebacks == 0,
                "throttled": warnings <= elapsed / 5.0 + 2,
                "rejections seen": bad > 0,
                "good frame": results.get(key) == "ok",
            }
            failed = [name for name, good in checks.items() if not good]
            if failed:
                ok = False
                print(f"[{key}] FAILED: {', '.join(failed)}")
                if "last worker error" in d:
                    print(f"[{key}] last worker error: {d['last worker error'][:300]}")
        print("PASS" if ok else f"FAIL (node logs kept in {tmp})")
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0 if ok else 1
    finally:
        for proc in procs.values():
            stop_process(proc)
        if probe is not None:
            probe.close()


if __name__ == "__main__":
    sys.exit(main())
