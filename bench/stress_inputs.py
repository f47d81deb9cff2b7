"""Resource cost of hostile inputs: decompression bombs, strip-shaped frames, bad sparse depth.

    python bench/stress_inputs.py [--bomb-side 9000] [--strip 64x8192] [--net-size 64x64] [--skip-traffic]

Each measurement runs in a fresh child process (its peak RSS growth is its own):
  - a ~1 KB 8-bit RLE BMP declaring bomb-side x bomb-side pixels, decoded by `cv2.imdecode` alone
    (what the node did before its decoder checked every format's header) and by
    `inference.image_decoding.decode_image` (refused from the header);
  - one strip frame (and its transpose) through `PerceptionPipeline.infer_image` with the tiny 150-class
    model at --net-size: network input, time of the first and a second call, peak RSS growth.
  - traffic through the node's worker (an in-process `DptNode` in fit mode with the tiny model, its
    batch function driven directly, outputs subscribed): steady good frames with good sparse depth,
    then per case one bad message followed by a good frame: a CompressedImage bomb in every format
    `decode_image` accepts (JPEG, PNG, BMP, WebP, TIFF size, TIFF tile), the strip frames as raw
    Images, and bad sparse depth (NaN, Inf / negative, wrong encoding, truncated, huge declared
    size, another resolution) fed before a good frame. Per case: the process's peak RSS against the
    steady state, the worker's time on the bad message (the stall), and whether the good frame
    after it equals an independent PerceptionPipeline's depth and labels.
Checks (exit status 1 if one fails): the guarded decode refuses the bomb in < 10 ms with < 8 MiB
growth; every strip frame takes < 10 s, < 256 MiB, with a network input of at most
MAX_NET_AREA_RATIO x the target's pixels; in traffic, every case's peak RSS <= 1.5x the steady
state, stall <= 2 s, and the good frame after it correct.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, struct, sys, time
sys.path.insert(0, sys.argv[1])
args = json.loads(sys.argv[2])

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

if args["kind"] == "bomb":
    import cv2, numpy as np
    from dpt_perception.inference.image_decoding import ImageDecodeError, decode_image
    side = args["side"]
    palette, pixels = bytes(1024), b"\x00\x01"  # 256 colours, then only "end of bitmap"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    data = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels
    before, start = peak_mib(), time.perf_counter()
    try:
        if args["guard"]:
            decode_image(data)
        else:
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        result = "decoded"
    except ImageDecodeError as exc:
        result = "refused: " + str(exc)
    out = {"bytes": len(data), "result": result}
else:
    import numpy as np, torch
    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.model.testing import tiny_model
    torch.set_num_threads(1)
    predictor = PerceptionPipeline(tiny_model(num_classes=150, net_size=args["net"]), device="cpu")
    predictor.infer_image(np.zeros((32, 32, 3), np.uint8))
    rgb = np.random.default_rng(0).integers(0, 256, (*args["shape"], 3), dtype=np.uint8)
    before, start = peak_mib(), time.perf_counter()
    prediction = predictor.infer_image(rgb)
    first = time.perf_counter() - start
    start = time.perf_counter()
    predictor.infer_image(rgb)
    out = {"net_shape": list(prediction.net_shape), "first_s": first}
out["seconds"] = time.perf_counter() - start
out["rss_growth_mib"] = peak_mib() - before
print(json.dumps(out))
"""


def _payloads(side: int) -> dict[str, bytes]:
    """Small payloads whose headers declare huge images, one per format `decode_image` reads."""
    import struct

    def png_chunk(kind: bytes, body: bytes) -> bytes:
        import zlib

        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    big = 60000  # > the 16-bit JPEG/WebP-lossy limits would allow: 60000^2 = 3.6 Gpx
    palette, pixels = bytes(1024), b"\x00\x01"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    bmp = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, big, big, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    jpeg = b"\xff\xd8" + sof + b"\xff\xda" + struct.pack(">H", 12) + bytes(10) + bytes(64) + b"\xff\xd9"
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 70000, 70000, 8, 2, 0, 0, 0))
           + png_chunk(b"IDAT", bytes(16)) + png_chunk(b"IEND", b""))
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (16383).to_bytes(3, "little") * 2
    webp = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x

    def tiff(width: int, height: int, tile: int | None) -> bytes:
        tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 2)]
        if tile:
            tags += [(322, 4, tile), (323, 4, tile)]
        ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in tags)
        return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(4) + bytes(64)

    return {"JPEG": jpeg, "PNG": png, "BMP": bmp, "WebP": webp, "TIFF": tiff(100000, 100000, None),
            "TIFF tile": tiff(16, 16, 65536)}


def _rss(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def traffic(net: list[int], strip: list[int], bomb_side: int) -> dict:
    """The traffic measurement (run in a fresh process: `--traffic-child`)."""
    import gc
    import random
    import tempfile
    import time

    import numpy as np
    import rclpy
    import torch
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage, Image

    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.inference.scheduling import GatheredFrame
    from dpt_perception.model.checkpoints import save_model
    from dpt_perception.model.testing import tiny_model
    from dpt_perception.ros.image_conversion import array_to_image, rgb8_to_image

    torch.set_num_threads(1)
    from dpt_perception.ros.node import DptNode

    folder = Path(tempfile.mkdtemp(prefix="stress_traffic_"))
    save_model(tiny_model(num_classes=150, net_size=net), folder / "tiny")
    reference = PerceptionPipeline(tiny_model(num_classes=150, net_size=net), device="cpu")
    rng = np.random.default_rng(0)
    good_rgb = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    expected = reference.infer_image(good_rgb)
    sparse_m = np.full((96, 128), np.nan, np.float32)
    sparse_m[::8, ::8] = rng.uniform(1.0, 5.0, sparse_m[::8, ::8].shape)

    context = Context()
    rclpy.init(context=context, domain_id=random.Random().randint(1, 101))
    node = None
    try:
        node = DptNode("stress_traffic", context=context, parameter_overrides=[
            Parameter("weights", value=str(folder / "tiny.safetensors")),
            Parameter("net_size", value=list(net)),
            Parameter("depth_mode", value="fit"),
            Parameter("sparse_depth_topic", value="sparse_depth"),
        ])
        node.perception.worker.stop()  # the bench drives the worker's batch function itself
        for topic in ("dpt/depth", "dpt/labels"):
            node.create_subscription(Image, topic, lambda msg: None, 10)
        key = next(iter(node.perception.cameras))
        channel = node.perception.cameras[key]
        spinner = SingleThreadedExecutor(context=context)
        spinner.add_node(node)
        for _ in range(200):  # the node learns of its subscribers from the matched events
            if channel.needs().depth and channel.needs().labels:
                break
            spinner.spin_once(timeout_sec=0.05)
        captured = []
        publish = node.perception.publish

        def capture(channel, header, rgb, prediction, needs):
            captured.append(prediction)
            return publish(channel, header, rgb, prediction, needs)

        node.perception.publish = capture
        stamp = [0]

        def stamped(msg):
            stamp[0] += 1
            msg.header.stamp.sec = stamp[0]
            return msg

        def sparse(msg) -> None:  # stamped like the next frame, so the fit takes it
            msg.header.stamp.sec = stamp[0] + 1
            channel._on_sparse(msg)

        def frame(msg) -> float:
            start = time.perf_counter()
            node.perception.process_batch([GatheredFrame(key, (stamped(msg), time.monotonic()), 0.0)])
            return time.perf_counter() - start

        def good_sparse():
            return array_to_image(sparse_m, "32FC1")

        def good_frame_correct() -> bool:
            sparse(good_sparse())
            before = len(captured)
            frame(rgb8_to_image(good_rgb))
            if len(captured) != before + 1:
                return False
            got = captured[-1]
            return bool(np.allclose(got.depth, expected.depth, rtol=1e-5, atol=1e-6)
                        and np.array_equal(got.labels, expected.labels))

        times = []
        for _ in range(10):
            sparse(good_sparse())
            times.append(frame(rgb8_to_image(good_rgb)))
        gc.collect()
        steady = _rss("VmRSS")
        frame_s = float(np.median(times[3:]))

        cases = []
        for name, data in _payloads(bomb_side).items():
            msg = CompressedImage(format="jpeg" if name == "JPEG" else "png" if name == "PNG" else "jpeg",
                                  data=data)
            cases.append((f"bomb {name} ({len(data)} B)", "image", msg))
        for shape in (strip, strip[::-1]):
            # Built when its case runs (below): a message made here would sit in this process during
            # the other cases and count in their peaks (38 MB for two 384x8192 strips and their pixels).
            def strip_message(shape=shape):
                return rgb8_to_image(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))

            cases.append((f"strip {shape[0]}x{shape[1]}", "image", strip_message))
        inf = sparse_m.copy()
        inf[::8, ::8] = np.where(rng.random(inf[::8, ::8].shape) < 0.5, np.inf, -1.0)
        truncated = good_sparse()
        truncated.data = truncated.data[: len(truncated.data) // 3]
        huge = good_sparse()
        huge.height = huge.width = 100000
        huge.step = 4 * 100000
        wrong = rgb8_to_image(good_rgb)
        cases += [
            ("sparse all NaN", "sparse", array_to_image(np.full((96, 128), np.nan, np.float32), "32FC1")),
            ("sparse Inf / negative", "sparse", array_to_image(inf, "32FC1")),
            ("sparse rgb8 encoding", "sparse", wrong),
            ("sparse truncated data", "sparse", truncated),
            ("sparse declares 100000x100000", "sparse", huge),
            ("sparse 7x5", "sparse", array_to_image(np.full((7, 5), 2.0, np.float32), "32FC1")),
        ]
        results = []
        for name, kind, msg in cases:
            msg = msg() if callable(msg) else msg  # the case's own message counts: the node receives it
            gc.collect()
            errors = channel.stats.snapshot()["errors"]
            channel.rejected_sparse = None
            _reset_peak()
            if kind == "image":
                stall = frame(msg)
            else:  # the bad sparse message rides along with the next good frame
                sparse(msg)
                stall = frame(rgb8_to_image(good_rgb))
            peak = _rss("VmHWM")
            stats = channel.stats.snapshot()
            depth = node.perception.cameras[key].depth
            if kind == "image":
                outcome = f"dropped: {stats['last_error']}" if stats["errors"] > errors else "processed"
            elif channel.rejected_sparse is msg:
                outcome = "ignored by the fit (error logged)"
            else:
                outcome = f"fit: {depth.last_fit.reason if depth.last_fit is not None else '-'}"
            ok = good_frame_correct()
            results.append({"case": name, "peak_mib": peak / 2**20, "peak_ratio": peak / steady,
                            "stall_s": stall, "outcome": outcome, "good_after_ok": ok})
        return {"steady_mib": steady / 2**20, "frame_s": frame_s, "cases": results,
                "worker_errors": node.perception.worker.stats().errors if node.perception.worker else 0}
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _child(**args) -> dict:
    command = [sys.executable, "-c", _CHILD, str(REPO), json.dumps(args)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _hw(text: str) -> list[int]:
    h, w = text.lower().split("x")
    return [int(h), int(w)]


def _report_traffic(args) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--traffic-child",
               "--net-size", "x".join(map(str, args.net_size)), "--strip", "x".join(map(str, args.strip)),
               "--bomb-side", str(args.bomb_side)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return [f"traffic child failed: {proc.stderr[-2000:]}"]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"traffic (in-process node, fit mode, net_size {args.net_size[0]}x{args.net_size[1]}): steady RSS "
          f"{run['steady_mib']:.0f} MiB, good frame {run['frame_s'] * 1e3:.0f} ms")
    print(f"  {'case':31s} {'peak RSS':>9s} {'x steady':>8s} {'stall':>8s}  good frame after  outcome")
    failures = []
    for case in run["cases"]:
        good = "ok" if case["good_after_ok"] else "WRONG"
        print(f"  {case['case']:31s} {case['peak_mib']:5.0f} MiB {case['peak_ratio']:8.2f} "
              f"{case['stall_s'] * 1e3:5.0f} ms  {good:16s}  {case['outcome'][:100]}")
        if case["peak_ratio"] > 1.5 or case["stall_s"] > 2.0 or not case["good_after_ok"]:
            failures.append(f"traffic case {case['case']}: over the target or a wrong frame after it")
    if run["worker_errors"]:
        failures.append(f"{run['worker_errors']} errors reached the inference worker")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bomb-side", type=int, default=9000, help="side the BMP header declares")
    parser.add_argument("--strip", type=_hw, default=[64, 8192], help="strip frame HxW")
    parser.add_argument("--net-size", type=_hw, default=[64, 64], help="target network size HxW")
    parser.add_argument("--skip-raw", action="store_true", help="do not run the unguarded decode")
    parser.add_argument("--skip-traffic", action="store_true", help="do not run the node traffic cases")
    parser.add_argument("--traffic-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.traffic_child:
        print(json.dumps(traffic(args.net_size, args.strip, args.bomb_side)))
        return 0
    from dpt_perception.inference.preprocess import MAX_NET_AREA_RATIO

    failures = []
    side = args.bomb_side
    if not args.skip_raw:
        raw = _child(kind="bomb", side=side, guard=False)
        print(f"bomb {raw['bytes']} B BMP declaring {side}x{side}, cv2.imdecode alone: {raw['result']} "
              f"in {raw['seconds'] * 1e3:.1f} ms, peak RSS +{raw['rss_growth_mib']:.0f} MiB")
    guarded = _child(kind="bomb", side=side, guard=True)
    print(f"bomb through decode_image: {guarded['result'][:90]} in {guarded['seconds'] * 1e3:.2f} ms, "
          f"peak RSS +{guarded['rss_growth_mib']:.0f} MiB")
    cheap = guarded["seconds"] <= 0.01 and guarded["rss_growth_mib"] <= 8
    if not guarded["result"].startswith("refused") or not cheap:
        failures.append("the guarded decode did not refuse the bomb cheaply")
    budget = MAX_NET_AREA_RATIO * args.net_size[0] * args.net_size[1]
    for shape in (args.strip, args.strip[::-1]):
        run = _child(kind="strip", shape=shape, net=args.net_size)
        h, w = run["net_shape"]
        print(f"strip {shape[0]}x{shape[1]} at net_size {args.net_size[0]}x{args.net_size[1]}: "
              f"network input {h}x{w}, first call {run['first_s']:.2f} s, second {run['seconds']:.2f} s, "
              f"peak RSS +{run['rss_growth_mib']:.0f} MiB")
        if h * w > budget or max(run["first_s"], run["seconds"]) > 10 or run["rss_growth_mib"] > 256:
            failures.append(f"strip {shape}: too large or too slow")
    if not args.skip_traffic:
        failures += _report_traffic(args)
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
