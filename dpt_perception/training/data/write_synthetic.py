"""Command line: render procedural scenes into the folder format (demo frames, smoke-test data).

    python -m dpt_perception.training.data.write_synthetic OUT_DIR --count 8 --width 320 --height 240 \\
        --seed 0 --hfov 60 --depth-format png

A fixed ``--hfov`` gives every frame the same intrinsics (also written to ``OUT_DIR/camera.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .synthetic import Camera, write_folder_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--hfov", type=float, default=None, help="horizontal field of view, degrees (default: random)"
    )
    p.add_argument("--depth-format", choices=("png", "npy", "pfm"), default="png")
    p.add_argument("--image-format", choices=("png", "jpg"), default="png")
    args = p.parse_args(argv)
    options = {} if args.hfov is None else {"hfov_deg": args.hfov}
    names = write_folder_dataset(
        args.out,
        args.count,
        seed=args.seed,
        width=args.width,
        height=args.height,
        depth_format=args.depth_format,
        image_format=args.image_format,
        **options,
    )
    if args.hfov is not None:
        K = Camera.from_fov(args.width, args.height, args.hfov).K
        cam = {"K": K.tolist(), "width": args.width, "height": args.height}
        (args.out / "camera.json").write_text(json.dumps(cam, indent=1))
    print(f"wrote {len(names)} frames to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
