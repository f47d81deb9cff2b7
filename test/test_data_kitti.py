"""KITTI depth reader: annotated layout with raw RGB + calibration, val_selection_cropped, pairs lists."""

import cv2
import numpy as np
import pytest

from dpt_perception.training.data import CorruptSampleError, KITTIDepthDataset

DRIVE = "2011_09_26_drive_0001_sync"
H, W = 10, 24


def _write_depth(path, metres):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(metres * 256.0).astype(np.uint16))


def _write_rgb(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return img[:, :, ::-1]


@pytest.fixture
def annotated(tmp_path):
    gt, raw = tmp_path / "data_depth_annotated", tmp_path / "raw"
    depth = np.zeros((H, W))
    depth[3, 5], depth[7, 20] = 12.5, 80.0  # sparse: everything else invalid
    rgbs = {}
    for cam in ("image_02", "image_03"):
        for frame in ("0000000005", "0000000006"):
            _write_depth(gt / "train" / DRIVE / "proj_depth" / "groundtruth" / cam / f"{frame}.png", depth)
            rgbs[(cam, frame)] = _write_rgb(
                raw / "2011_09_26" / DRIVE / cam / "data" / f"{frame}.png", len(rgbs)
            )
    (raw / "2011_09_26" / "calib_cam_to_cam.txt").write_text(
        "calib_time: x\nP_rect_02: 721.5 0 609.5 44.8 0 721.5 172.8 0.2 0 0 1 0.003\n"
        "P_rect_03: 700 0 600 -3.3 0 700 170 0.002 0 0 1 0.003\n"
    )
    return gt, raw, depth, rgbs


def test_annotated_layout_pairs_depth_with_raw_rgb(annotated):
    gt, raw, depth, rgbs = annotated
    ds = KITTIDepthDataset(gt, split="train", raw_root=raw)
    assert len(ds) == 4
    s = ds[0]
    assert s["name"] == f"{DRIVE}_image_02_0000000005"
    np.testing.assert_array_equal(s["image"], rgbs[("image_02", "0000000005")])
    assert s["depth"][3, 5] == 12.5 and s["depth"][7, 20] == 80.0 and s["depth_valid"].sum() == 2
    np.testing.assert_allclose(s["K"], [[721.5, 0, 609.5], [0, 721.5, 172.8], [0, 0, 1]])
    np.testing.assert_allclose(ds[2]["K"][0, 0], 700.0)  # image_03 uses P_rect_03
    assert not s["has_labels"]
    assert len(KITTIDepthDataset(gt, raw_root=raw, cameras=["image_02"])) == 2


def test_missing_rgb_is_an_error_unless_allowed(annotated):
    gt, raw, _, _ = annotated
    (raw / "2011_09_26" / DRIVE / "image_03" / "data" / "0000000006.png").unlink()
    with pytest.raises(FileNotFoundError, match="allow_missing_rgb"):
        KITTIDepthDataset(gt, raw_root=raw)
    ds = KITTIDepthDataset(gt, raw_root=raw, allow_missing_rgb=True)
    assert len(ds) == 3 and ds.num_missing_rgb == 1


def test_selection_layout_reads_intrinsics(tmp_path):
    root = tmp_path / "val_selection_cropped"
    depth = np.zeros((H, W))
    depth[2, 2] = 3.0
    _write_depth(root / "groundtruth_depth" / f"{DRIVE}_groundtruth_depth_0000000005_image_02.png", depth)
    rgb = _write_rgb(root / "image" / f"{DRIVE}_image_0000000005_image_02.png", 0)
    (root / "intrinsics").mkdir()
    (root / "intrinsics" / f"{DRIVE}_image_0000000005_image_02.txt").write_text("700 0 10 0 710 5 0 0 1\n")
    s = KITTIDepthDataset(root, layout="selection")[0]
    np.testing.assert_array_equal(s["image"], rgb)
    assert s["depth"][2, 2] == 3.0 and s["depth_valid"].sum() == 1
    assert s["K"][1, 1] == 710.0


def test_pairs_file_with_focal_and_none_depth(tmp_path):
    depth = np.full((H, W), 5.0)
    _write_depth(tmp_path / "gt" / "a.png", depth)
    _write_rgb(tmp_path / "img" / "seq" / "a.png", 0)
    _write_rgb(tmp_path / "img" / "seq" / "b.png", 1)
    lst = tmp_path / "list.txt"
    lst.write_text("# rgb depth focal\nseq/a.png a.png 721.5\nseq/b.png None 721.5\n")
    ds = KITTIDepthDataset(
        layout="pairs", pairs_file=lst, rgb_root=tmp_path / "img", depth_root=tmp_path / "gt"
    )
    assert len(ds) == 1
    s = ds[0]
    assert s["name"] == "seq_a" and np.allclose(s["depth"], 5.0)
    np.testing.assert_allclose(s["K"], [[721.5, 0, (W - 1) / 2], [0, 721.5, (H - 1) / 2], [0, 0, 1]])
    both = KITTIDepthDataset(
        layout="pairs",
        pairs_file=lst,
        rgb_root=tmp_path / "img",
        depth_root=tmp_path / "gt",
        keep_missing_depth=True,
    )
    assert len(both) == 2 and not both[1]["has_depth"]
    lst.write_text("seq/a.png\n")
    with pytest.raises(ValueError, match="list.txt:1"):
        KITTIDepthDataset(layout="pairs", pairs_file=lst)


def test_size_mismatch_is_corrupt(annotated):
    gt, raw, _, _ = annotated
    cv2.imwrite(
        str(gt / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / "0000000005.png"),
        np.zeros((H + 1, W), np.uint16),
    )
    with pytest.raises(CorruptSampleError, match="depth is"):
        KITTIDepthDataset(gt, raw_root=raw)[0]
