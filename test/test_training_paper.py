"""The paper-table command on BTS-style NYU / KITTI test sets the test writes."""
import dataclasses
import json

import cv2
import numpy as np
import pytest

from dpt_perception.model.checkpoints import load_model, save_model
from dpt_perception.model.testing import tiny_model
from dpt_perception.training import evaluate, paper
from dpt_perception.training.protocols import PROTOCOLS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_set(root, hw, png_scale, n, seed, missing=0):
    """`n` frames as a BTS list (`rgb depth focal`), plus `missing` lines without ground truth."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        (root / "scene").mkdir(parents=True, exist_ok=True)
        rgb = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
        depth = np.where(rng.uniform(size=hw) < 0.5, rng.uniform(0.3, 90.0, hw), 0.0)
        cv2.imwrite(str(root / "scene" / f"rgb_{i:05d}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "scene" / f"sync_depth_{i:05d}.png"),
                    np.round(np.minimum(depth * png_scale, 65535)).astype(np.uint16))
        lines.append(f"/scene/rgb_{i:05d}.png /scene/sync_depth_{i:05d}.png 518.8579")
    lines += [f"/scene/nothing_{i}.png None 721.5377" for i in range(missing)]
    (root / "list.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sets(tmp_path):
    _write_set(tmp_path / "nyu", (480, 640), 1000.0, 2, seed=0)
    _write_set(tmp_path / "kitti", (375, 1242), 256.0, 2, seed=1, missing=1)
    weights = {}
    for name, (scale, shift) in {"nyu": (0.02, 0.1), "kitti": (0.002, 0.012)}.items():
        model = tiny_model(seed=0, depth_kind="metric", depth_scale=scale, depth_shift=shift,
                           net_size=[64, 64], depth_weight_scale=20.0)
        weights[name], _ = save_model(model, tmp_path / f"tiny_{name}")
    return tmp_path, weights


def test_paper_table_prints_the_published_numbers_next_to_ours(sets, capsys):
    root, weights = sets
    argv = ["--nyu-list", str(root / "nyu/list.txt"), "--nyu-root", str(root / "nyu"),
            "--kitti-list", str(root / "kitti/list.txt"), "--kitti-data-root", str(root / "kitti"),
            "--kitti-gt-root", str(root / "kitti"), "--nyu-weights", str(weights["nyu"]),
            "--kitti-weights", str(weights["kitti"]), "--device", "cpu", "--json", str(root / "t.json")]
    assert paper.main(argv) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    paper_rows = [line.split() for line in lines if line.startswith("paper (DPT-Hybrid)")]
    assert paper_rows[0][2:] == ["0.904", "0.988", "0.998", "0.109", "0.054", "0.357", "0.129", "9.521",
                                 "0.045", "654"]
    assert paper_rows[1][2:] == ["0.959", "0.995", "0.999", "0.062", "0.222", "2.575", "0.092", "8.282",
                                 "0.027", "652"]
    assert "Eigen rows 45:471" in printed and "KB 352x1216" in printed and "Garg" in printed
    assert "1 list entries without ground truth skipped" in printed and "PNG-quantised" in printed
    table = json.loads((root / "t.json").read_text())
    ours_rows = [line.split() for line in lines if line.startswith("ours")]
    for row, name in zip(ours_rows, ("nyu", "kitti")):
        depth = table["ours"][name]["depth"]
        assert row[1:10] == [f"{depth[key]:.3f}" for _, key in paper.TABLE_COLUMNS]
        assert row[10] == "2" and depth["num_images"] == 2

    # "ours" is the evaluation CLI's protocol run on the same frames (quantised as the official PNGs)
    dataset = paper.BTSListDataset(root / "kitti/list.txt", root / "kitti", root / "kitti", 256.0)
    options = evaluate.EvalConfig(protocol="kitti", png_quantize=True, device="cpu", data={"type": "x"},
                                  batch_size=1)  # one frame per forward, as the paper command
    results, _, _ = evaluate.run_evaluation(load_model(str(weights["kitti"])), options, dataset)
    assert results["depth"]["abs_rel"] == pytest.approx(table["ours"]["kitti"]["depth"]["abs_rel"], rel=1e-12)
    unquantised = dataclasses.replace(options, png_quantize=False)
    other, _, _ = evaluate.run_evaluation(load_model(str(weights["kitti"])), unquantised, dataset)
    assert other["depth"]["abs_rel"] != results["depth"]["abs_rel"]  # quantisation is applied
    assert abs(other["depth"]["abs_rel"] - results["depth"]["abs_rel"]) < 1e-2


def test_bts_list_reader_reads_millimetres_and_skips_frames_without_ground_truth(sets):
    root, _ = sets
    nyu = paper.BTSListDataset(root / "nyu/list.txt", root / "nyu")
    kitti = paper.BTSListDataset(root / "kitti/list.txt", root / "kitti", depth_scale=256.0)
    assert len(nyu) == 2 and len(kitti) == 2 and kitti.num_missing == 1
    stored = cv2.imread(str(root / "nyu/scene/sync_depth_00001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(nyu[1]["depth"], stored / 1000.0, rtol=1e-6)
    assert nyu[1]["image"].shape == (480, 640, 3) and PROTOCOLS["nyu"].png_scale == 1000.0
    (root / "bad.txt").write_text("only_one_column.png\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        paper.BTSListDataset(root / "bad.txt", root)


def test_missing_arguments_are_reported(capsys):
    assert paper.main([]) == 2
    assert "give at least one test set" in capsys.readouterr().err
    assert paper.main(["--kitti-list", "x.txt"]) == 2
    assert "--kitti-data-root and --kitti-gt-root" in capsys.readouterr().err
