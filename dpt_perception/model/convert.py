"""Convert any supported checkpoint to our format, optionally composing depth + segmentation.

    python -m dpt_perception.model.convert SRC OUT [--preset NAME]
    python -m dpt_perception.model.convert DEPTH_SRC OUT --compose-with SEG_SRC [--encoder-from depth]

SRC is anything `load_model` reads: our format, an HF DPT directory, an official release `.pt`
(its preset is found from the file name; otherwise pass --preset), or a preset name.
"""

from __future__ import annotations

import argparse
import sys

from .checkpoints import load_model, save_model
from .checkpoints.compose import compose_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="checkpoint path or preset name")
    parser.add_argument("output", help="output path stem: writes OUTPUT.safetensors and OUTPUT.json")
    parser.add_argument("--preset", help="preset of an official file whose name is not the release name")
    parser.add_argument(
        "--compose-with", metavar="SEG_SRC", help="segmentation checkpoint to join with SOURCE"
    )
    parser.add_argument(
        "--encoder-from",
        choices=["depth", "segmentation"],
        default="depth",
        help="which checkpoint's encoder the composed model keeps (default: depth)",
    )
    args = parser.parse_args(argv)
    model = load_model(args.source, preset=args.preset)
    if args.compose_with:
        model = compose_models(model, load_model(args.compose_with), encoder_from=args.encoder_from)
    weights, config = save_model(model, args.output)
    print(f"wrote {weights} and {config} (variant {model.config.variant}, heads {model.config.heads})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
