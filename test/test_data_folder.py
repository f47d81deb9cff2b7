"""Folder-format reader on real files (16-bit PNG mm, .npy, .pfm, label PNGs), corrupt files, SkipCorrupt."""

import json

import cv2
import numpy as np
import pytest
import torch

from dpt_perception.training.data import CorruptSampleError, FolderDataset, SkipCorrupt
from dpt_perception.training.data.fileio import read_pfm, write_pfm


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    for sub in ("rgb", "depth", "labels"):
        (tmp_path / sub).mkdir()
    h, w = 6, 8
    imgs = {n: _rgb(h, w, i) for i, n in enumerate(["a", "b", "c", "d"])}
    cv2.imwrite(str(tmp_path / "rgb" / "a.png"), cv2.cvtColor(imgs["a"], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "rgb" / "b.png"), cv2.cvtColor(imgs["b"], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "rgb" / "c.png"), cv2.cvtColor(imgs["c"], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "rgb" / "d.jpg"), cv2.cvtColor(imgs["d"], cv2.COLOR_RGB2BGR))
    mm = np.arange(h * w, dtype=np.uint16).reshape(h, w) * 100 + 250
    mm[0, 0] = 0  # invalid
    cv2.imwrite(str(tmp_path / "depth" / "a.png"), mm)
    metres = np.full((h, w), 2.5, np.float32)
    metres[1, 2] = np.nan
    metres[2, 3] = -1.0
    np.save(tmp_path / "depth" / "b.npy", metres)
    pfm = np.linspace(0.5, 5.0, h * w, dtype=np.float32).reshape(h, w)
    write_pfm(tmp_path / "depth" / "c.pfm", pfm)
    labels = np.tile(np.array([0, 1, 2, 255], np.uint8), (h, 2))
    cv2.imwrite(str(tmp_path / "labels" / "a.png"), labels)
    cv2.imwrite(str(tmp_path / "labels" / "d.png"), labels)
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["x", "y", "z"], "colors": [[1, 2, 3]] * 3}))
    (tmp_path / "camera.json").write_text(
        json.dumps({"K": [[10, 0, 3.5], [0, 10, 2.5], [0, 0, 1]], "width": 16, "height": 12})
    )
    return tmp_path, imgs, mm, metres, pfm, labels


def test_reads_every_depth_encoding_with_units_and_invalid_masks(folder):
    root, imgs, mm, metres, pfm, labels = folder
    ds = FolderDataset(root)
    assert [f["name"] for f in ds.frames] == ["a", "b", "c", "d"]
    a, b, c, d = (ds[i] for i in range(4))
    np.testing.assert_array_equal(a["image"], imgs["a"])
    np.testing.assert_allclose(a["depth"], mm.astype(np.float32) / 1000.0)
    assert a["depth"].dtype == np.float32 and not a["depth_valid"][0, 0] and a["depth_valid"].sum() == 47
    np.testing.assert_array_equal(a["labels"], labels.astype(np.int64))
    assert a["has_depth"] and a["has_labels"]
    assert b["has_depth"] and not b["has_labels"] and "labels" not in b
    assert not b["depth_valid"][1, 2] and not b["depth_valid"][2, 3] and b["depth_valid"].sum() == 46
    assert b["depth"][1, 2] == 0.0 and np.isfinite(b["depth"]).all()
    np.testing.assert_array_equal(c["depth"], pfm)
    assert not d["has_depth"] and d["has_labels"] and "depth" not in d
    # camera.json was written for 16x12, images are 8x6: K scaled by 0.5 about pixel centres
    np.testing.assert_allclose(a["K"], [[5, 0, 1.5], [0, 5, 1.0], [0, 0, 1]])
    assert ds.num_classes == 3 and ds.class_colors[0] == (1, 2, 3)


def test_require_and_names_file_select_frames(folder):
    root = folder[0]
    assert [f["name"] for f in FolderDataset(root, require_depth=True).frames] == ["a", "b", "c"]
    assert [f["name"] for f in FolderDataset(root, require_labels=True).frames] == ["a", "d"]
    (root / "split.txt").write_text("c\na\n")
    assert [f["name"] for f in FolderDataset(root, names_file=root / "split.txt").frames] == ["c", "a"]
    assert not FolderDataset(root, use_depth=False)[0]["has_depth"]
    with pytest.raises(FileNotFoundError, match="no rgb file"):
        FolderDataset(root, names=["zzz"])


def test_pfm_round_trip_keeps_row_order(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_pfm(tmp_path / "x.pfm", arr)
    np.testing.assert_array_equal(read_pfm(tmp_path / "x.pfm"), arr)
    # rows are stored bottom-to-top in the file
    raw = (tmp_path / "x.pfm").read_bytes()
    assert np.frombuffer(raw[-16:], "<f4").tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("truncated_rgb", "not a decodable image"),
        ("depth_8bit", "16-bit"),
        ("depth_size", "depth is"),
        ("label_out_of_range", "outside 0..2"),
        ("label_colour", "class ids"),
    ],
)
def test_broken_files_raise_corrupt_sample_error_naming_the_file(folder, breakage, match):
    root = folder[0]
    if breakage == "truncated_rgb":
        p = root / "rgb" / "a.png"
        p.write_bytes(p.read_bytes()[:30])
    elif breakage == "depth_8bit":
        cv2.imwrite(str(root / "depth" / "a.png"), np.ones((6, 8), np.uint8))
    elif breakage == "depth_size":
        cv2.imwrite(str(root / "depth" / "a.png"), np.ones((5, 8), np.uint16))
    elif breakage == "label_out_of_range":
        cv2.imwrite(str(root / "labels" / "a.png"), np.full((6, 8), 7, np.uint8))
    else:
        colours = np.zeros((6, 8, 3), np.uint8)
        colours[..., 2] = 9
        cv2.imwrite(str(root / "labels" / "a.png"), colours)
    ds = FolderDataset(root)
    with pytest.raises(CorruptSampleError, match=match) as err:
        ds[0]
    assert "a." in err.value.source or "a.png" in str(err.value)


def test_skip_corrupt_counts_skips_and_never_returns_broken_data(folder):
    root = folder[0]
    (root / "rgb" / "b.png").write_bytes(b"not a png")
    ds = SkipCorrupt(FolderDataset(root))
    names = [ds[i]["name"] for i in range(4)]
    assert names == ["a", "c", "c", "d"]  # b replaced by the next readable sample
    assert ds.num_corrupt == 1 and list(ds.corrupt) == [1] and "b.png" in ds.corrupt[1]
    ds[1]  # known bad: skipped without re-reading, not counted twice
    assert ds.num_corrupt == 1
    assert ds.num_classes == 3  # attributes of the wrapped dataset pass through
    with pytest.raises(CorruptSampleError):
        SkipCorrupt(FolderDataset(root), fail_fast=True)[1]


def test_skip_corrupt_counts_across_dataloader_workers(folder):
    root = folder[0]
    (root / "rgb" / "b.png").write_bytes(b"broken")
    (root / "rgb" / "c.png").write_bytes(b"broken")
    ds = SkipCorrupt(FolderDataset(root))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=lambda s: s["name"])
    assert sorted(loader) == ["a", "d", "d", "d"]
    assert ds.num_corrupt >= 2  # b and c failed in the workers; the parent sees the shared counter


def test_all_corrupt_raises_instead_of_looping(folder):
    root = folder[0]
    for p in (root / "rgb").iterdir():
        p.write_bytes(b"x")
    with pytest.raises(RuntimeError, match="consecutive corrupt"):
        SkipCorrupt(FolderDataset(root))[0]
