"""Golden regression: the bundled demo weights on a fixed synthetic frame, checked against stored
values, so that a change of numerics anywhere on the node's path (checkpoint loading, preprocessing,
the network, depth/label upsampling, the exact label ids, relative -> metric depth, class-aware
depth, point projection) fails here, even when every unit test still holds.

The path is the node's: `PerceptionPipeline` (CPU, fp32, the model's own net_size) -> `CameraDepth` in
`fixed` mode -> `ClassAwareDepth` with the node's default `too_far_classes: [auto]` (sky = +Inf,
no point) -> `PointCloudProjector` with P = [K | 0].

The stored values (test/golden/demo_weights_frame.npz) are NEVER rewritten by the test. After an
intended numerics change, regenerate them deliberately and commit the new file with the reason:

    source scripts/env.sh && python test/test_golden_demo_weights.py --regenerate

(`python test/test_golden_demo_weights.py` without the flag prints the current deviations.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")  # ros.demo
torch = pytest.importorskip("torch")

GOLDEN = Path(__file__).resolve().parent / "golden" / "demo_weights_frame.npz"
FRAME_INDEX, FRAME_COUNT, FRAME_HW = 5, 6, (120, 160)  # frame 5: floor, wall, box and sky all present
# Fixed-mode pair, fitted once (least squares of 1/z on x) against this frame's ground truth, rounded.
DEPTH_SCALE, DEPTH_SHIFT = 0.29, -0.11
STRIDE = 4  # float outputs are stored on every 4th row/column (30 x 40), plus full-frame sums

# Tolerances, with why:
# - relative inverse depth: rtol 1e-5. Thread count (1 vs 2) and channels-last vs contiguous memory
#   change float32 summation order; measured worst relative deviation 9.5e-7, so 1e-5 is ~10x
#   headroom, while a real change is caught: LayerNorm eps 1e-6 -> 1e-5 moves 616 of the 1200
#   stored values by up to 5.3e-5, a half grey level in the normalisation mean by up to 1.2e-3.
# - metric depth and points: rtol 1e-5 as well; 1/(s x + t) with |t| < s x here amplifies the
#   relative error of x by at most ~1.6x (measured worst 1.05e-6).
# - labels: exact, except at pixels whose top-two logits (after the bilinear upsampling) are
#   within LABEL_TIE of each other (3 pixels of 19200 here): a 1e-6 wobble may legitimately flip
#   those, so either of the two classes is accepted there, and depth is compared only where the
#   label (which decides sky = +Inf) agrees.
RTOL, ATOL = 1e-5, 1e-6
SUM_RTOL = 1e-5
LABEL_TIE = 1e-3


def compute() -> dict[str, np.ndarray]:
    """Run the demo weights over the fixed frame; everything the golden file stores, full size."""
    import torch.nn.functional as F

    from dpt_perception.inference.class_aware_depth import ClassAwareDepth
    from dpt_perception.inference.depth_semantics import CameraDepth
    from dpt_perception.inference.geometry import PointCloudProjector
    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.inference.sample_frames import sample_frames
    from dpt_perception.model.checkpoints import load_model
    from dpt_perception.ros.demo import DEMO_WEIGHTS

    rgb, k, _truth = sample_frames(FRAME_COUNT, *FRAME_HW)[FRAME_INDEX]
    model = load_model(DEMO_WEIGHTS)
    pipeline = PerceptionPipeline(model, device="cpu", precision="fp32",
                                  outputs=("depth", "labels", "logits"))
    prediction = pipeline.infer_image(rgb)
    metric, relative = CameraDepth("fixed", DEPTH_SCALE, DEPTH_SHIFT).convert(
        prediction.depth, prediction.depth_kind
    )
    classed = ClassAwareDepth.from_names(model.config.class_names, ["auto"]).apply(metric, prediction.labels)
    points = PointCloudProjector().project(classed.points_depth, np.hstack([k, np.zeros((3, 1))]))
    logits = torch.as_tensor(np.asarray(prediction.logits, dtype=np.float32)).reshape(
        1, model.config.num_classes, *np.shape(prediction.logits)[-2:]
    )
    top2 = F.interpolate(logits, size=FRAME_HW, mode="bilinear", align_corners=False)[0].topk(2, dim=0)
    tie = (top2.values[0] - top2.values[1]).numpy() < LABEL_TIE
    runner_up = np.where(tie, top2.indices[1].numpy(), prediction.labels).astype(prediction.labels.dtype)
    return {
        "rgb": rgb,
        "relative": relative,
        "depth": classed.depth,
        "labels": prediction.labels,
        "labels_alt": runner_up,
        "points": points,
    }


def _sums(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Full-frame float64 sums of the finite values and the count of non-finite ones."""
    out = {}
    for name in ("relative", "depth", "points"):
        a = values[name].astype(np.float64)
        finite = np.isfinite(a)
        out[f"{name}_sum"] = np.array(a[finite].sum())
        out[f"{name}_nonfinite"] = np.array((~finite).sum())
    return out


def to_golden(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sub = (slice(None, None, STRIDE), slice(None, None, STRIDE))
    return {
        "rgb_sum": np.array(int(values["rgb"].astype(np.int64).sum())),
        "labels": values["labels"],
        "labels_alt": values["labels_alt"],
        **{f"{n}_grid": values[n][sub] for n in ("relative", "depth", "points")},
        **_sums(values),
    }


def deviations(golden, got: dict[str, np.ndarray]) -> list[str]:
    """What differs from the stored values beyond the tolerances (empty = matches)."""
    problems = []
    if int(golden["rgb_sum"]) != int(got["rgb_sum"]):
        problems.append(f"the input frame changed (pixel sum {int(got['rgb_sum'])}, "
                        f"stored {int(golden['rgb_sum'])})")
    labels, alt = golden["labels"], golden["labels_alt"]
    same = got["labels"] == labels
    bad = ~(same | (got["labels"] == alt))
    if bad.any():
        problems.append(f"labels: {int(bad.sum())} of {labels.size} pixels differ at non-tied pixels, "
                        f"first at {np.argwhere(bad)[0].tolist()}")
    same_grid = same[::STRIDE, ::STRIDE]
    for name in ("relative", "depth", "points"):
        g, a = golden[f"{name}_grid"], got[f"{name}_grid"]
        keep = same_grid if name != "points" else same_grid[..., None].repeat(3, axis=-1)
        ok = np.isclose(a, g, rtol=RTOL, atol=ATOL, equal_nan=True) | ~keep
        if not ok.all():
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = np.abs(a - g) / np.abs(g)
            worst = float(np.nanmax(np.where(ok, np.nan, rel)))
            problems.append(f"{name}: {int((~ok).sum())} of {ok.size} stored values off by more than rtol "
                            f"{RTOL} (worst relative deviation {worst:.3g})")
        if not np.all(same):  # a tied pixel flipped: sums include it, compare only the grid
            continue
        if int(got[f"{name}_nonfinite"]) != int(golden[f"{name}_nonfinite"]):
            problems.append(f"{name}: {int(got[f'{name}_nonfinite'])} non-finite values, stored "
                            f"{int(golden[f'{name}_nonfinite'])}")
        s, gs = float(got[f"{name}_sum"]), float(golden[f"{name}_sum"])
        if not np.isclose(s, gs, rtol=SUM_RTOL, atol=0.0):
            problems.append(f"{name}: full-frame sum {s!r}, stored {gs!r} "
                            f"(relative {abs(s - gs) / abs(gs):.3g})")
    return problems


@pytest.fixture(scope="module")
def current():
    return compute()


def test_golden_file_is_present_and_meaningful():
    assert GOLDEN.is_file(), f"{GOLDEN} is missing; create it with: python {Path(__file__).name} --regenerate"
    golden = np.load(GOLDEN)
    counts = np.bincount(golden["labels"].ravel(), minlength=5)
    assert (counts > 0).sum() >= 4, f"the frame should show several classes, got counts {counts}"
    assert int(golden["depth_nonfinite"]) == counts[4] > 0  # sky (class 4) is +Inf, the rest finite
    assert int((golden["labels"] != golden["labels_alt"]).sum()) <= 10  # only a few near-ties


def test_demo_weights_reproduce_the_stored_depth_labels_and_points(current):
    golden = np.load(GOLDEN)
    problems = deviations(golden, to_golden(current))
    assert not problems, "numerics changed against test/golden (regenerate only if intended: python " \
        f"test/{Path(__file__).name} --regenerate):\n  " + "\n  ".join(problems)


def test_the_comparison_catches_a_small_numerics_change(current):
    # The tolerance is tight enough: a 1e-4 relative change of the network output (far below what
    # an eps, interpolation or weight change does) is reported, and so is a single flipped label.
    golden = np.load(GOLDEN)
    nudged = dict(current, relative=current["relative"] * np.float32(1 + 1e-4))
    assert any(p.startswith("relative") for p in deviations(golden, to_golden(nudged)))
    labels = current["labels"].copy()
    untied = np.argwhere(golden["labels"] == golden["labels_alt"])[0]
    labels[tuple(untied)] = (labels[tuple(untied)] + 1) % 5
    assert any(p.startswith("labels") for p in deviations(golden, to_golden(dict(current, labels=labels))))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regenerate", action="store_true",
                        help=f"rewrite {GOLDEN.relative_to(GOLDEN.parents[2])} from the current code")
    args = parser.parse_args(argv)
    got = to_golden(compute())
    if args.regenerate:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(GOLDEN, **got)
        print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
        return 0
    problems = deviations(np.load(GOLDEN), got)
    print("\n".join(problems) if problems else "matches the stored values")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working copy, as conftest does
    sys.exit(main(sys.argv[1:]))
