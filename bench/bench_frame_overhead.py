#!/usr/bin/env python3
"""Per-frame cost of everything around the model forward, at camera resolution.

Stages (median ms over --repeats): decode (rgb8 / bgr8 / JPEG), resize + normalise, depth
upsampling, labels (class ids at the frame size from --classes logits), colourising, point cloud,
encoding the output payloads.

Label inputs are the segmentation head's half-resolution logits (what the node gets) for two
layouts with a known answer: a rendered synthetic scene (floor, walls, boxes, spheres, sky; each
segment its own class) and a cluttered one (30 Voronoi regions); logits are smooth noise for every
class plus a margin for the layout's class, blurred so boundaries have near-ties
(model.testing.layout_logits).

Each stage is measured next to a straightforward peer in the same run (the reference or a naive
implementation), and the ratio peer / ours is printed. The total sums the stages a node runs per
frame (rgb8 input, all outputs).

    python bench/bench_frame_overhead.py                      # 640x480, 150 classes, 1 thread
    python bench/bench_frame_overhead.py --width 1280 --height 720 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_perception.inference.colorize import colorize_depth, colorize_labels, colormap_lut  # noqa: E402
from dpt_perception.inference.geometry import PointCloudProjector, pack_rgb_float  # noqa: E402
from dpt_perception.inference.labels import labels_from_logits, labels_nearest  # noqa: E402
from dpt_perception.inference.pipeline import upsample_depth_numpy  # noqa: E402
from dpt_perception.inference.preprocess import net_input_shape, preprocess  # noqa: E402
from dpt_perception.model.classes import default_palette  # noqa: E402
from dpt_perception.model.testing import layout_logits, voronoi_layout  # noqa: E402
from dpt_perception.training.data.synthetic import random_scene, render_scene  # noqa: E402


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def synthetic_frame(h: int, w: int) -> np.ndarray:
    """A smooth image with edges (JPEG sizes and decode times like a real scene, unlike noise)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    g = np.where((xx // 80 + yy // 60) % 2 == 0, 200, 60).astype(np.float32)
    b = 255 * yy / h
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


# ---- naive peers ------------------------------------------------------------------------------
def naive_normalise(rgb, shape):
    resized = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    x = (resized.astype(np.float64) / 255.0 - 0.5) / 0.5
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]


def torch_bicubic(depth_low, size):
    t = torch.from_numpy(depth_low)[None, None]
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False)[0, 0].clamp_(min=0).numpy()


def naive_colorize_depth(depth, lut):
    lo, hi = np.nanpercentile(depth, [2, 98])
    idx = np.clip((depth - lo) / (hi - lo) * 255, 0, 255)
    idx = np.nan_to_num(idx).astype(np.uint8)
    out = lut[idx]
    out[~np.isfinite(depth)] = 0
    return out


def naive_blend(labels, palette, image, alpha=0.5):
    blend = (1 - alpha) * image.astype(np.float64) + alpha * palette[labels].astype(np.float64)
    return blend.astype(np.uint8)


def loop_cloud_rows(depth, rgb, fx, fy, cx, cy, rows):
    """Per-point Python loop (what a direct port of depth_image_proc's C++ loop does in Python)."""
    h, w = depth.shape
    out = np.empty((rows, w, 4), np.float32)
    packed = pack_rgb_float(rgb[:rows])
    for v in range(rows):
        for u in range(w):
            z = depth[v, u]
            if not (z > 0) or z == np.inf:
                out[v, u, :3] = np.nan
            else:
                out[v, u, 0] = (u - cx) * z / fx
                out[v, u, 1] = (v - cy) * z / fy
                out[v, u, 2] = z
            out[v, u, 3] = packed[v, u]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--net-size", type=int, default=384, help="network target size (minimal rule)")
    ap.add_argument("--classes", type=int, default=150, help="segmentation classes (ADE20K: 150)")
    ap.add_argument("--repeats", type=int, default=30, help="timed repetitions per stage")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    ap.add_argument("--loop-rows", type=int, default=30,
                    help="rows the per-point Python loop peer runs on (extrapolated to the frame)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    h, w = args.height, args.width
    net = net_input_shape(h, w, args.net_size)
    rng = np.random.default_rng(0)
    rgb = synthetic_frame(h, w)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    raw_rgb = rgb.tobytes()
    raw_bgr = bgr.tobytes()
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    depth_low = (1 + rng.random(net, dtype=np.float32)).cumsum(0) / net[0]  # smooth-ish, positive
    half = (net[0] // 2, net[1] // 2)
    # A rendered scene whose every connected segment (each box, sphere, wall...) gets its own class.
    rendered = render_scene(random_scene(5, width=half[1], height=half[0]))["labels"]
    segments = np.zeros(half, np.int64)
    for c in np.unique(rendered):
        count, parts = cv2.connectedComponents((rendered == c).astype(np.uint8))
        segments[parts > 0] = parts[parts > 0] + segments.max()
    scene_layout = rng.choice(args.classes, segments.max() + 1, replace=False)[segments]
    scene_logits = layout_logits(scene_layout, args.classes, seed=0)
    cluttered_logits = layout_logits(voronoi_layout(*half, 30, args.classes, seed=1), args.classes, seed=1)
    depth = upsample_depth_numpy(depth_low, (h, w))
    labels = labels_from_logits(scene_logits, (h, w), lowres=True)[0]
    palette = default_palette(args.classes)
    lut = colormap_lut("turbo")
    P = [525.0, 0, w / 2 - 0.5, 0, 0, 525.0, h / 2 - 0.5, 0, 0, 0, 1, 0]
    projector = PointCloudProjector()
    depth_colour = colorize_depth(depth)
    label_colour = colorize_labels(labels, palette, rgb, 0.5)
    cloud = projector.project_xyzrgb(depth, P, rgb)
    imread_rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)

    def decode_jpeg():
        buf = np.frombuffer(jpeg, np.uint8)
        if imread_rgb is not None:
            return cv2.imdecode(buf, imread_rgb)
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    rows = []  # (stage, ours_ms, peer_ms or None, peer description, in_total)
    r = args.repeats

    def add(stage, ours, peer, peer_name, in_total=True):
        rows.append((stage, median_ms(ours, r), None if peer is None else median_ms(peer, max(3, r // 3)),
                     peer_name, in_total))

    add("decode rgb8 (zero-copy view)", lambda: np.frombuffer(raw_rgb, np.uint8).reshape(h, w, 3),
        lambda: np.frombuffer(raw_rgb, np.uint8).reshape(h, w, 3).copy(), "copy (cv_bridge-style)")
    add("decode bgr8 -> rgb (cv2)", lambda: cv2.cvtColor(np.frombuffer(raw_bgr, np.uint8).reshape(h, w, 3),
                                                         cv2.COLOR_BGR2RGB),
        lambda: np.ascontiguousarray(np.frombuffer(raw_bgr, np.uint8).reshape(h, w, 3)[..., ::-1]),
        "numpy flip + copy", in_total=False)
    add("decode JPEG q90 -> rgb (cv2)", decode_jpeg, None, "-", in_total=False)
    add(f"resize {h}x{w}->{net[0]}x{net[1]} + normalise",
        lambda: preprocess(rgb, net, (0.5,) * 3, (0.5,) * 3, "cpu"),
        lambda: naive_normalise(rgb, net), "numpy float64 + CHW copy")
    add("depth upsample bicubic (cv2)", lambda: upsample_depth_numpy(depth_low, (h, w)),
        lambda: torch_bicubic(depth_low, (h, w)), "torch bicubic (reference)")

    def head_upsample(lowres_logits):  # the segmentation head's x2, which the node's forward skips
        return F.interpolate(lowres_logits, scale_factor=2, mode="bilinear", align_corners=True)

    def reference_resize(lowres_logits):  # the head's x2, then the reference resize to the frame
        return F.interpolate(head_upsample(lowres_logits), size=(h, w), mode="bilinear", align_corners=False)

    def nearest_ids(at_net):  # the "nearest" path: argmax at network resolution, ids upsampled
        return labels_nearest(at_net[0].permute(1, 2, 0).numpy().argmax(-1).astype(np.uint8), (h, w))

    agreement = {}
    label_inputs = [(f"scene, {len(np.unique(scene_layout))} segments", scene_logits, True),
                    ("cluttered, 30 regions", cluttered_logits, False)]
    for name, lowres_logits, in_total in label_inputs:
        add(f"labels: exact ({name})", lambda x=lowres_logits: labels_from_logits(x, (h, w), lowres=True),
            lambda x=lowres_logits: reference_resize(x).max(1).indices, "resize all logits + argmax (ref)",
            in_total=in_total)
        ref = reference_resize(lowres_logits).argmax(1)[0].numpy()
        agreement[name] = (float(np.mean(labels_from_logits(lowres_logits, (h, w), lowres=True)[0] == ref)),
                           float(np.mean(nearest_ids(head_upsample(lowres_logits)) == ref)))
    at_net = head_upsample(scene_logits)
    add("labels: argmax@net + nearest (scene)", lambda: nearest_ids(at_net), None, "-", in_total=False)
    head_upsample_ms = median_ms(lambda: head_upsample(scene_logits), max(3, r // 3))
    add("colourise depth (turbo, robust range)", lambda: colorize_depth(depth),
        lambda: naive_colorize_depth(depth, lut), "full nanpercentile + float index")
    add("colourise labels + blend", lambda: colorize_labels(labels, palette, rgb, 0.5),
        lambda: naive_blend(labels, palette, rgb), "float64 numpy blend")
    fx, fy, cx, cy = P[0], P[5], P[2], P[6]
    add("point cloud xyz+rgb (cached rays)", lambda: projector.project_xyzrgb(depth, P, rgb), None, "-")
    loop_ms = median_ms(lambda: loop_cloud_rows(depth, rgb, fx, fy, cx, cy, args.loop_rows), 1, warmup=0)
    stage, ours_ms, _, _, _ = rows[-1]
    rows[-1] = (stage, ours_ms, loop_ms * h / args.loop_rows, "per-point Python loop (extrapolated)", True)
    add("point cloud, rays rebuilt per call", lambda: PointCloudProjector().project_xyzrgb(depth, P, rgb),
        None, "-", in_total=False)
    add("encode payloads (depth, ids, 2 colour, cloud)",
        lambda: (depth.tobytes(), labels.tobytes(), depth_colour.tobytes(), label_colour.tobytes(),
                 cloud.tobytes()), None, "-")
    add("encode colour JPEG q90 (compressed topic)",
        lambda: cv2.imencode(".jpg", depth_colour, [cv2.IMWRITE_JPEG_QUALITY, 90]), None, "-", in_total=False)

    print(f"frame {h}x{w}, network {net[0]}x{net[1]}, {args.classes} classes, threads {args.threads}, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}; median ms")
    print(f"| {'stage':46s} | {'ours':>7s} | {'peer':>8s} | {'peer/ours':>9s} | peer |")
    print(f"|{'-' * 48}|{'-' * 9}|{'-' * 10}|{'-' * 11}|------|")
    for stage, ours, peer, name, in_total in rows:
        mark = "" if in_total else " *"
        peer_s = f"{peer:8.2f}" if peer is not None else f"{'-':>8s}"
        ratio = f"{peer / ours:8.1f}x" if peer is not None else f"{'-':>9s}"
        print(f"| {stage + mark:46s} | {ours:7.2f} | {peer_s} | {ratio} | {name} |")
    total = sum(o for _, o, _, _, t in rows if t)
    peer_total = sum((p if p is not None else o) for _, o, p, _, t in rows if t)
    labels_ms = next(o for s, o, _, _, t in rows if s.startswith("labels") and t)
    ratio = peer_total / total
    print(f"| {'TOTAL (rows without *)':46s} | {total:7.2f} | {peer_total:8.2f} | {ratio:8.1f}x | |")
    print(f"| {'TOTAL without labels':46s} | {total - labels_ms:7.2f} | | | |")
    cluttered_ms = next(o for s, o, _, _, _ in rows if s.startswith("labels: exact (cluttered"))
    print(f"| {'TOTAL with the cluttered labels':46s} | {total - labels_ms + cluttered_ms:7.2f} | | | |")
    print("* alternative inputs/paths, not in the total")
    for name, (exact, nearest) in agreement.items():
        print(f"labels agree with the reference on {100 * exact:.3f}% of pixels ({name}); "
              f"argmax@net + nearest on {100 * nearest:.2f}%")
    print(f"the head's x2 upsample of {args.classes} logits, which the node's forward skips: "
          f"{head_upsample_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
