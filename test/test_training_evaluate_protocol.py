"""`evaluate --protocol`: the CLI on faked KITTI / ADE20K sets against an independent computation
(official float preprocessing, KB crop, Garg crop, BTS clipping and formulas)."""
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_perception.model.checkpoints import save_model
from dpt_perception.model.testing import tiny_model
from dpt_perception.training import evaluate

KITTI_HW = (375, 1242)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def official_input(rgb, net_hw):
    """Official transforms (float64 /255, cubic resize of floats, mean = std = 0.5), float32."""
    img = cv2.resize(rgb / 255.0, (net_hw[1], net_hw[0]), interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(((img - 0.5) / 0.5).transpose(2, 0, 1).astype(np.float32))[None]


def write_kitti_pairs(root, n=2, seed=0):
    """A BTS-style list (`rgb depth focal`, None = no ground truth) with KITTI-sized frames."""
    rng = np.random.default_rng(seed)
    lines, frames = [], []
    for i in range(n):
        rgb = rng.integers(0, 256, KITTI_HW + (3,), dtype=np.uint8)
        depth = np.zeros(KITTI_HW)
        hit = rng.uniform(size=KITTI_HW) < 0.2
        depth[hit] = rng.uniform(0.5, 95.0, hit.sum())  # beyond 80 m too: excluded by the cap
        (root / "raw").mkdir(parents=True, exist_ok=True)
        (root / "gt").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "raw" / f"{i}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "gt" / f"{i}.png"), np.round(depth * 256).astype(np.uint16))
        lines.append(f"{i}.png {i}.png 721.5377")
        frames.append((rgb, np.round(depth * 256) / 256))
    lines.append("missing.png None 721.5377")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return frames


def bts_errors(gt, pred):
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {"abs_rel": np.mean(np.abs(gt - pred) / gt), "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
            "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100, "delta1": (thresh < 1.25).mean()}


def test_kitti_protocol_on_the_cli_equals_an_independent_computation(tmp_path, capsys):
    model = tiny_model(seed=0, depth_kind="metric", depth_scale=0.02, depth_shift=0.01)
    save_model(model, tmp_path / "tiny.safetensors")
    frames = write_kitti_pairs(tmp_path)
    data = {"type": "kitti", "layout": "pairs", "pairs_file": str(tmp_path / "list.txt"),
            "rgb_root": str(tmp_path / "raw"), "depth_root": str(tmp_path / "gt"),
            "transform": {"net_size": 64}}  # the one transform option evaluation uses
    out = tmp_path / "report"
    rc = evaluate.main(["--weights", str(tmp_path / "tiny.safetensors"), "--data", json.dumps(data),
                        "--protocol", "kitti", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "KB 352x1216" in printed and "Garg" in printed and "0.001 < gt < 80 m" in printed
    assert "preprocessing: reference" in printed  # the default
    report = json.loads((out / "report.json").read_text())
    assert report["depth"]["num_images"] == 2 and report["num_images"] == 2

    net_hw = (64, 224)  # tiny net_size 64: scale 64/352 is closer to 1 than 64/1216
    expected = {k: [] for k in ("abs_rel", "rmse", "silog", "delta1")}
    for rgb, gt in frames:
        crop = rgb[23:375, 13:1229]  # KB crop of 375x1242
        with torch.inference_mode():
            inv = model(official_input(crop, net_hw))["depth"]
        metres = 1.0 / (0.02 * inv + 0.01).clamp(min=1e-8)
        up = F.interpolate(metres[:, None], size=(352, 1216), mode="bicubic", align_corners=False)[0, 0]
        pred = np.zeros(KITTI_HW)
        pred[23:, 13:1229] = up.double().numpy()
        pred = np.clip(pred, 1e-3, 80.0)
        crop_mask = np.zeros(KITTI_HW, bool)
        crop_mask[153:371, 44:1197] = True  # Garg crop of 375x1242
        valid = (gt > 1e-3) & (gt < 80.0) & crop_mask
        for k, v in bts_errors(gt[valid], pred[valid]).items():
            expected[k].append(v)
    for k, values in expected.items():
        assert report["depth"][k] == pytest.approx(np.mean(values), rel=1e-6), k


def test_protocol_caps_cannot_be_overridden_and_heads_must_fit(tmp_path, capsys):
    model = tiny_model(seed=0)
    save_model(model, tmp_path / "tiny.safetensors")
    base = ["--weights", str(tmp_path / "tiny.safetensors"), "--data", "{type: synthetic, length: 2}"]
    assert evaluate.main(base + ["--protocol", "kitti", "--max-depth", "50"]) == 2
    assert "max_depth is fixed by protocol 'kitti' (80 m)" in capsys.readouterr().err
    assert evaluate.main(base + ["--protocol", "ade20k", "--out", str(tmp_path / "r")]) == 2
    assert "needs a 150-class model, this one has 5 classes" in capsys.readouterr().err
    spec = "{type: synthetic, length: 2, transform: {keep_aspect: false}}"
    resized = ["--weights", base[1], "--data", spec]
    assert evaluate.main(resized + ["--out", str(tmp_path / "r")]) == 2
    assert "['keep_aspect'] are not used by evaluation" in capsys.readouterr().err


def test_ade20k_protocol_counts_labelled_pixels_only(tmp_path):
    """A 150-class model on a faked ADEChallengeData2016: pixel accuracy equals the official
    computation (argmax + 1 against the annotation, 0 ignored) of the reference label path."""
    root = tmp_path / "ADEChallengeData2016"
    for sub in ("images/validation", "annotations/validation"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(5)
    anns, rgbs = [], []
    for i in range(2):
        rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        ann = rng.integers(0, 151, (40, 56)).astype(np.uint8)
        ann[:10] = 0
        cv2.imwrite(str(root / "images/validation" / f"ADE_val_{i:08d}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "annotations/validation" / f"ADE_val_{i:08d}.png"), ann)
        anns.append(ann.astype(np.int64))
        rgbs.append(rgb)
    model = tiny_model(seed=2, heads=("segmentation",), num_classes=150)
    options = evaluate.EvalConfig(data={"type": "ade20k", "root": str(root), "split": "validation",
                                        "transform": {"net_size": [64, 64]}},
                                  protocol="ade20k", device="cpu")
    results, _, protocol = evaluate.run_evaluation(model, options)
    correct = labelled = 0
    for rgb, ann in zip(rgbs, anns):
        with torch.inference_mode():
            logits = model(official_input(rgb, (32, 64)))["segmentation"]  # 40x56 at net 64: x1.14
        up = F.interpolate(logits, size=(40, 56), mode="bicubic", align_corners=False)
        ids = up.argmax(1)[0].numpy() + 1  # the official numbering
        correct += int(((ids == ann) & (ann > 0)).sum())
        labelled += int((ann > 0).sum())
    assert protocol.name == "ade20k" and "depth" not in results
    assert results["segmentation"]["num_pixels"] == labelled
    assert results["segmentation"]["pixel_accuracy"] == pytest.approx(correct / labelled, rel=1e-12)


def test_depth_kind_overrides_convert_the_pipeline_output(tmp_path):
    """--depth-kind relative on a metric model aligns its inverse metres; --depth-kind metric on a
    relative model converts with the config's scale/shift (1 / max(s*x + t, 1e-8))."""
    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.training.protocols import get_protocol, image_depth_errors

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gt = rng.uniform(1.0, 20.0, (48, 64)).astype(np.float32)
    sample = {"image": rgb, "depth": gt, "depth_valid": np.ones_like(gt, bool), "has_depth": True,
              "has_labels": False, "ignore_index": 255}
    protocol = get_protocol("none", 1e-3, 80.0)
    cases = (("metric", dict(depth_kind="metric", depth_scale=0.5, depth_shift=0.1), True),
             ("relative", dict(depth_scale=0.5, depth_shift=0.1), False))
    for mode, overrides, relative in cases:
        model = tiny_model(seed=3, depth_weight_scale=20.0, **overrides)
        options = evaluate.EvalConfig(device="cpu", data={"type": "x", "transform": {"net_size": 64}},
                                      depth_kind="relative" if relative else "metric")
        results, _, _ = evaluate.run_evaluation(model, options, dataset=[sample])
        reference = PerceptionPipeline(model, device="cpu", net_size=64, preprocessing="reference")
        raw = reference.infer_image(rgb).depth
        if relative:  # metres from the model, aligned as inverse depth
            expected = image_depth_errors(protocol, 1.0 / np.maximum(raw, 1e-8), gt, relative=True)
        else:  # inverse relative depth from the model, converted with its config
            expected = image_depth_errors(protocol, 1.0 / np.maximum(0.5 * raw + 0.1, 1e-8), gt)
        assert results["depth"]["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-9), mode
