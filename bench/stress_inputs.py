"""Resource cost of hostile inputs: a decompression-bomb payload and strip-shaped frames.

    python bench/stress_inputs.py [--bomb-side 9000] [--strip 64x8192] [--net-size 64x64]

Each measurement runs in a fresh child process (its peak RSS growth is its own):
  - a ~1 KB 8-bit RLE BMP declaring bomb-side x bomb-side pixels, decoded by `cv2.imdecode` alone
    (what the node did before its decoder checked every format's header) and by
    `inference.image_decoding.decode_image` (refused from the header);
  - one strip frame (and its transpose) through `Predictor.infer_image` with the tiny 150-class
    model at --net-size: network input, time of the first and a second call, peak RSS growth.
Checks (exit status 1 if one fails): the guarded decode refuses the bomb in < 10 ms with < 8 MiB
growth; every strip frame takes < 10 s, < 256 MiB, with a network input of at most
MAX_NET_AREA_RATIO x the target's pixels.
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
    from dpt_perception.inference.predictor import Predictor
    from dpt_perception.model.testing import tiny_model
    torch.set_num_threads(1)
    predictor = Predictor(tiny_model(num_classes=150, net_size=args["net"]), device="cpu")
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


def _child(**args) -> dict:
    command = [sys.executable, "-c", _CHILD, str(REPO), json.dumps(args)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _hw(text: str) -> list[int]:
    h, w = text.lower().split("x")
    return [int(h), int(w)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bomb-side", type=int, default=9000, help="side the BMP header declares")
    parser.add_argument("--strip", type=_hw, default=[64, 8192], help="strip frame HxW")
    parser.add_argument("--net-size", type=_hw, default=[64, 64], help="target network size HxW")
    parser.add_argument("--skip-raw", action="store_true", help="do not run the unguarded decode")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
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
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
