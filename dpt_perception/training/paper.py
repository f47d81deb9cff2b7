"""The DPT paper's depth table next to ours, from the real test sets and the release weights:
``python -m dpt_perception.training.paper --nyu-list L --nyu-root D --kitti-list L
--kitti-data-root D --kitti-gt-root D [--ade20k-root D]``.

Test sets as the official evaluation takes them (the BTS lists):

* NYUv2: ``nyudepthv2_test_files_with_gt.txt`` (``<rgb> <depth> <focal>`` per line, 654 frames),
  RGB and ``sync_depth_*.png`` (uint16 millimetres) under ``--nyu-root`` (``--nyu-gt-root`` when
  the depth lives elsewhere);
* KITTI: ``eigen_test_files_with_gt.txt`` (697 lines, ``None`` = no ground truth, skipped as the
  official run's "45 GT files missing"), RGB under ``--kitti-data-root`` (the raw data), depth
  PNGs (metres x 256) under ``--kitti-gt-root``;
* ADE20K (optional): ``ADEChallengeData2016`` (validation split); the release's evaluation notes
  give no ADE20K numbers, so ours are printed alone.

Weights default to the release files by name (downloaded and hash-checked once, see
``inference.weights``): dpt_hybrid_nyu, dpt_hybrid_kitti, dpt_hybrid_ade20k. Every frame goes
through `evaluate.run_evaluation` with the published protocol (``training.protocols``), the
``reference`` preprocessing and, as the official flow stores its predictions in uint16 PNGs before
scoring them, PNG quantisation (``--no-png-quantize`` turns it off).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dpt_perception.training.data.base import SampleDataset
from dpt_perception.training.data.fileio import read_depth_file, read_rgb
from dpt_perception.training.data.sample import CorruptSampleError, make_sample

#: columns of the official evaluation output, in its order (our metric names)
TABLE_COLUMNS = (("d1", "delta1"), ("d2", "delta2"), ("d3", "delta3"), ("AbsRel", "abs_rel"),
                 ("SqRel", "sq_rel"), ("RMSE", "rmse"), ("RMSElog", "rmse_log"), ("SILog", "silog"),
                 ("log10", "log10"))
#: DPT-Hybrid, as published (the paper, reproduced by the release's EVALUATION.md runs)
PAPER = {
    "nyu": {"frames": 654, "delta1": 0.904, "delta2": 0.988, "delta3": 0.998, "abs_rel": 0.109,
            "sq_rel": 0.054, "rmse": 0.357, "rmse_log": 0.129, "silog": 9.521, "log10": 0.045},
    "kitti": {"frames": 652, "delta1": 0.959, "delta2": 0.995, "delta3": 0.999, "abs_rel": 0.062,
              "sq_rel": 0.222, "rmse": 2.575, "rmse_log": 0.092, "silog": 8.282, "log10": 0.027},
}
DEFAULT_WEIGHTS = {"nyu": "dpt_hybrid_nyu", "kitti": "dpt_hybrid_kitti", "ade20k": "dpt_hybrid_ade20k"}
NYU_DEPTH_SCALE = 1000.0  # sync_depth PNGs: millimetres


class BTSListDataset(SampleDataset):
    """Frames of a BTS test list: ``<rgb> <depth|None> [<focal>]`` per line, paths relative to
    `data_root` / `gt_root`, depth PNGs in metres x `depth_scale`; ``None`` lines are skipped."""

    def __init__(self, list_file: str | Path, data_root: str | Path, gt_root: str | Path | None = None,
                 depth_scale: float = NYU_DEPTH_SCALE):
        super().__init__(None)
        self.list_file = Path(list_file)
        data_root = Path(data_root)
        gt_root = Path(gt_root) if gt_root is not None else data_root
        self.depth_scale = float(depth_scale)
        self.items: list[tuple[Path, Path]] = []
        self.num_missing = 0
        for lineno, line in enumerate(self.list_file.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) not in (2, 3):
                raise ValueError(f"{self.list_file}:{lineno}: expected '<rgb> <depth> [<focal>]', "
                                 f"got {line!r}")
            if parts[1] == "None":
                self.num_missing += 1
                continue
            self.items.append((data_root / parts[0].lstrip("/"), gt_root / parts[1].lstrip("/")))
        if not self.items:
            raise FileNotFoundError(f"{self.list_file} lists no frame with ground truth")

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict[str, Any]:
        rgb_path, depth_path = self.items[index]
        image = read_rgb(rgb_path)
        depth = read_depth_file(depth_path, self.depth_scale)
        if depth.shape != image.shape[:2]:
            raise CorruptSampleError(depth_path, f"depth is {depth.shape}, the RGB {rgb_path.name} is "
                                                 f"{image.shape[:2]}")
        return make_sample(image, name=rgb_path.stem, depth=depth, source=str(rgb_path))


def format_table(rows: list[tuple[str, dict]]) -> str:
    """The official output's layout: one line per (label, metrics)."""
    width = max(len(label) for label, _ in rows)
    head = " " * width + " " + "".join(f"{name:>9}" for name, _ in TABLE_COLUMNS) + f"{'frames':>8}"
    lines = [head]
    for label, values in rows:
        cells = "".join(f"{values[key]:9.3f}" if values.get(key) is not None else f"{'-':>9}"
                        for _, key in TABLE_COLUMNS)
        lines.append(f"{label:<{width}} {cells}{values.get('frames', '-'):>8}")
    return "\n".join(lines)


def _evaluate(name: str, weights: str, dataset, args) -> dict:
    from dpt_perception.model.checkpoints import load_model
    from dpt_perception.training.evaluate import EvalConfig, run_evaluation

    model = load_model(weights)
    options = EvalConfig(protocol=name, preprocessing=args.preprocessing, png_quantize=args.png_quantize,
                         device=args.device, batch_size=1, max_batches=args.max_frames, num_examples=0,
                         data={"type": name})
    results, _, protocol = run_evaluation(model, options, dataset=dataset)
    return {"results": results, "protocol": protocol.describe(), "weights": str(weights)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dpt_perception.training.paper",
                                description="The DPT paper's NYUv2/KITTI table next to ours (and ADE20K).")
    p.add_argument("--nyu-list", type=Path, help="BTS nyudepthv2_test_files_with_gt.txt")
    p.add_argument("--nyu-root", type=Path, help="folder the NYU list's RGB paths are relative to")
    p.add_argument("--nyu-gt-root", type=Path, help="folder of the depth paths (default --nyu-root)")
    p.add_argument("--kitti-list", type=Path, help="BTS eigen_test_files_with_gt.txt")
    p.add_argument("--kitti-data-root", type=Path, help="KITTI raw data (RGB paths of the list)")
    p.add_argument("--kitti-gt-root", type=Path, help="KITTI depth ground truth (depth paths of the list)")
    p.add_argument("--ade20k-root", type=Path, help="ADEChallengeData2016 (validation split)")
    for name, default in DEFAULT_WEIGHTS.items():
        p.add_argument(f"--{name}-weights", default=default, help=f"weights (default {default})")
    p.add_argument("--preprocessing", default="reference", choices=["reference", "fast"],
                   help="reference (default, the official pipeline) or fast (the node's)")
    p.add_argument("--no-png-quantize", dest="png_quantize", action="store_false",
                   help="score float predictions instead of the official flow's uint16 PNG values")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--max-frames", type=int, default=0, help="frames per set (0 = all)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sets: dict[str, Any] = {}
    try:
        if args.nyu_list is not None:
            if args.nyu_root is None:
                raise ValueError("--nyu-list needs --nyu-root")
            sets["nyu"] = BTSListDataset(args.nyu_list, args.nyu_root, args.nyu_gt_root, NYU_DEPTH_SCALE)
        if args.kitti_list is not None:
            if args.kitti_data_root is None or args.kitti_gt_root is None:
                raise ValueError("--kitti-list needs --kitti-data-root and --kitti-gt-root")
            from dpt_perception.training.data.kitti import KITTI_DEPTH_SCALE

            sets["kitti"] = BTSListDataset(args.kitti_list, args.kitti_data_root, args.kitti_gt_root,
                                           KITTI_DEPTH_SCALE)
        if args.ade20k_root is not None:
            from dpt_perception.training.data import ADE20KDataset

            sets["ade20k"] = ADE20KDataset(args.ade20k_root, split="validation")
        if not sets:
            raise ValueError("give at least one test set: --nyu-list, --kitti-list or --ade20k-root")
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {}
    for name, dataset in sets.items():
        weights = getattr(args, f"{name}_weights")
        try:
            out[name] = _evaluate(name, weights, dataset, args)
        except (ValueError, CorruptSampleError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        results = out[name]["results"]
        print(f"== {name}: {weights}, {results['num_images']} frames, preprocessing {args.preprocessing}"
              f"{', PNG-quantised' if args.png_quantize and name != 'ade20k' else ''}")
        for line in out[name]["protocol"]:
            print(f"   {line}")
        if name == "ade20k":
            seg = results.get("segmentation", {})
            print(f"   ours: pixel accuracy {seg.get('pixel_accuracy', float('nan')):.4f}, "
                  f"mIoU {seg.get('miou', float('nan')):.4f} (single scale; no published number to compare)")
            continue
        ours = dict(results.get("depth", {}), frames=results.get("depth", {}).get("num_images"))
        print(format_table([("paper (DPT-Hybrid)", PAPER[name]), ("ours", ours)]))
        if getattr(dataset, "num_missing", 0):
            print(f"   {dataset.num_missing} list entries without ground truth skipped")
    if args.json is not None:
        from dpt_perception.training.metrics import finite_or_none

        args.json.write_text(json.dumps(finite_or_none(
            {"paper": PAPER, "ours": {k: v["results"] for k, v in out.items()}}), indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
