#!/usr/bin/env python3
"""`fast` vs `reference` preprocessing: how far the node's fast path is from the official
pipeline's outputs, and what each costs per frame.

Model: the bundled demo weights (dpt_perception/data/demo_weights/, trained on synthetic scenes),
at their own net size and at 384 (the release depth models' size). Images: real photographs
(scikit-image's bundled data images when scikit-image is installed, else matplotlib's bundled
sample photograph grace_hopper.jpg) and the project's sample frames (rendered scenes).

Then the per-frame cost of the two paths outside the forward at the release scale (640x480
frame, net 384x512, 150 classes; logits with a known layout, model.testing.layout_logits):
preprocess, depth resampling and labels (fast: the exact bilinear path from the head's
half-resolution logits; reference: bicubic logits, then argmax), with their label agreement.

Per image it prints the network-input difference (max |x_fast - x_ref|, normalised units), the
depth difference relative to the reference depth range (max and mean |d_fast - d_ref| / range of
d_ref, and the max per-pixel relative difference |d_fast - d_ref| / |d_ref|), the label agreement,
and the median per-frame times (preprocess and total, ms) of both paths.

    python bench/bench_preprocessing.py                 # 1 torch thread, 5 timed repeats
    python bench/bench_preprocessing.py --threads 2 --repeats 9
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_perception.inference.autotune import cpu_model  # noqa: E402
from dpt_perception.inference.labels import labels_bicubic, labels_from_logits  # noqa: E402
from dpt_perception.inference.pipeline import PerceptionPipeline, upsample_depth, upsample_depth_numpy  # noqa: E402
from dpt_perception.inference.preprocess import preprocess  # noqa: E402
from dpt_perception.inference.sample_frames import sample_frames  # noqa: E402
from dpt_perception.model.checkpoints import load_model  # noqa: E402
from dpt_perception.model.testing import layout_logits, voronoi_layout  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "dpt_perception/data/demo_weights/dpt_demo_synthetic.safetensors"


def photographs() -> tuple[str, list[tuple[str, np.ndarray]]]:
    """(source description, [(name, uint8 RGB)]) of real photographs bundled with installed packages."""
    try:
        import skimage.data as data

        names = ("astronaut", "chelsea", "coffee", "rocket", "cat")
        return "scikit-image data", [(n, np.ascontiguousarray(getattr(data, n)()[:, :, :3])) for n in names
                                     if hasattr(data, n)]
    except ImportError:
        import matplotlib.cbook as cbook
        import matplotlib.image as mpimg

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            img = np.asarray(mpimg.imread(f, format="jpg"))[:, :, :3]
        return ("scikit-image is not installed; matplotlib's bundled photograph",
                [("grace_hopper", np.ascontiguousarray(img.astype(np.uint8)))])


def median_ms(values: list[float]) -> float:
    return statistics.median(values)


def compare(model, rgb: np.ndarray, net_size, repeats: int) -> dict:
    fast = PerceptionPipeline(model, device="cpu", net_size=net_size, preprocessing="fast")
    ref = PerceptionPipeline(model, device="cpu", net_size=net_size, preprocessing="reference")
    shape = fast.net_shape_for(*rgb.shape[:2])
    x_fast = preprocess(rgb, shape, model.config.mean, model.config.std, preprocessing="fast")
    x_ref = preprocess(rgb, shape, model.config.mean, model.config.std, preprocessing="reference")
    timings = {"fast": [], "reference": []}
    for _ in range(repeats + 1):  # the first run of each is a warm-up
        for name, predictor in (("fast", fast), ("reference", ref)):
            timings[name].append(predictor.infer_image(rgb))
    pf, pr = timings["fast"][-1], timings["reference"][-1]
    span = float(pr.depth.max() - pr.depth.min()) or 1.0
    diff = np.abs(pf.depth - pr.depth)
    rel = diff / np.maximum(np.abs(pr.depth), 1e-6 * span)
    out = {
        "net": f"{shape[0]}x{shape[1]}",
        "input_max": float((x_fast - x_ref).abs().max()),
        "depth_max_span": float(diff.max() / span),
        "depth_mean_span": float(diff.mean() / span),
        "depth_rel_max": float(rel.max()),
        "depth_rel_mean": float(rel.mean()),
        "labels_agree": float((pf.labels == pr.labels).mean()),
    }
    for name, preds in timings.items():
        out[f"{name}_pre_ms"] = median_ms([p.timings["preprocess"] for p in preds[1:]])
        out[f"{name}_total_ms"] = median_ms([p.timings["total"] for p in preds[1:]])
    return out


def timed_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def release_scale_costs(rgb: np.ndarray, repeats: int) -> None:
    """Stages outside the forward for a 640x480 frame at net 384x512 with 150 classes."""
    h, w = rgb.shape[:2]
    net, classes = (384, 512), 150
    lowres = layout_logits(voronoi_layout(net[0] // 2, net[1] // 2, 30, classes, seed=1), classes, seed=1)
    full = F.interpolate(lowres, scale_factor=2, mode="bilinear", align_corners=True)  # the head's x2
    depth = torch.rand(1, *net) + 0.5
    fast_ids = labels_from_logits(lowres, (h, w), lowres=True)[0]
    ref_ids = labels_bicubic(full, (h, w))[0].numpy()
    rows = [
        ("preprocess", lambda: preprocess(rgb, net, (0.5,) * 3, (0.5,) * 3, preprocessing="fast"),
         lambda: preprocess(rgb, net, (0.5,) * 3, (0.5,) * 3, preprocessing="reference")),
        ("depth to the frame", lambda: upsample_depth_numpy(depth[0].numpy().copy(), (h, w)),
         lambda: upsample_depth(depth, (h, w), clamp=False)),
        (f"labels ({classes} classes)", lambda: labels_from_logits(lowres, (h, w), lowres=True),
         lambda: labels_bicubic(full, (h, w))),
    ]
    print()
    print(f"Outside the forward, {w}x{h} frame, net {net[0]}x{net[1]}, {classes} classes "
          f"(median of {repeats}):")
    print()
    print("| stage | fast ms | reference ms |")
    print("|---|---|---|")
    total_fast = total_ref = 0.0
    for name, fast_fn, ref_fn in rows:
        tf, tr = timed_ms(fast_fn, repeats), timed_ms(ref_fn, repeats)
        total_fast, total_ref = total_fast + tf, total_ref + tr
        print(f"| {name} | {tf:.1f} | {tr:.1f} |")
    print(f"| total | {total_fast:.1f} | {total_ref:.1f} |")
    print(f"\nlabels agree (bilinear from half resolution vs bicubic): {(fast_ids == ref_ids).mean():.2%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(DEMO)
    source, photos = photographs()
    frames = [(f"sample_frame_{i}", rgb) for i, (rgb, _, _) in enumerate(sample_frames(2, 480, 640))]
    print(f"CPU: {cpu_model()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"median of {args.repeats} frames")
    print(f"model: {DEMO.name} ({model.config.variant}, {model.config.num_classes} classes)")
    print(f"photographs: {source}")
    print()
    print("| image | size | net input | input max diff | depth max / mean diff (of range) | depth max / mean "
          "rel. diff | labels agree | fast pre / total ms | reference pre / total ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rgb in photos + frames:
        for net_size in (model.config.net_size, 384):
            r = compare(model, rgb, net_size, args.repeats)
            print(f"| {name} | {rgb.shape[0]}x{rgb.shape[1]} | {r['net']} | {r['input_max']:.4f} "
                  f"| {r['depth_max_span']:.2%} / {r['depth_mean_span']:.3%} "
                  f"| {r['depth_rel_max']:.2%} / {r['depth_rel_mean']:.3%} | {r['labels_agree']:.2%} "
                  f"| {r['fast_pre_ms']:.1f} / {r['fast_total_ms']:.1f} "
                  f"| {r['reference_pre_ms']:.1f} / {r['reference_total_ms']:.1f} |")
    release_scale_costs(frames[0][1], args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
