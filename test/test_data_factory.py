"""build_dataset: every type from a YAML-friendly dict, common options, and clear errors."""

import cv2
import h5py
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin
from torch.utils.data import ConcatDataset, Subset

from dpt_perception.training.data import (
    DATASET_TYPES,
    ADE20KDataset,
    SkipCorrupt,
    SyntheticDataset,
    TrainTransform,
    build_dataset,
    write_folder_dataset,
)


def test_synthetic_and_folder_from_yaml_with_transform_limit_and_concat(tmp_path):
    write_folder_dataset(tmp_path / "frames", 3, seed=2, width=32, height=24)
    spec = yaml.safe_load(
        f"""
        type: concat
        datasets:
          - {{type: synthetic, length: 5, seed: 1, width: 32, height: 24, max_spheres: 0}}
          - {{type: folder, root: {tmp_path / "frames"}, require_depth: true, limit: 2}}
        """
    )
    ds = build_dataset(spec, transform=TrainTransform(net_size=16))
    assert isinstance(ds, ConcatDataset) and len(ds) == 7
    assert ds[6]["image"].shape == (3, 16, 16)
    inner = ds.datasets[0]
    assert isinstance(inner, SkipCorrupt) and isinstance(inner.dataset, SyntheticDataset)
    assert inner.dataset.scene_options == {"max_spheres": 0}
    assert isinstance(ds.datasets[1], Subset)
    raw = build_dataset({"type": "synthetic", "length": 2, "width": 8, "height": 8, "skip_corrupt": False})
    assert isinstance(raw, SyntheticDataset) and raw[0]["image"].shape == (8, 8, 3)


def test_every_reader_type_builds_from_a_spec(tmp_path):
    # ade20k
    ade = tmp_path / "ADEChallengeData2016"
    (ade / "images" / "training").mkdir(parents=True)
    (ade / "annotations" / "training").mkdir(parents=True)
    cv2.imwrite(str(ade / "images" / "training" / "ADE_train_00000001.jpg"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(ade / "annotations" / "training" / "ADE_train_00000001.png"), np.ones((4, 4), np.uint8))
    # nyu
    with h5py.File(tmp_path / "nyu.mat", "w") as f:
        f["images"] = np.zeros((1, 3, 5, 4), np.uint8)
        f["depths"] = np.ones((1, 5, 4), np.float32)
        f["labels"] = np.zeros((1, 5, 4), np.uint16)
    # kitti pairs
    cv2.imwrite(str(tmp_path / "k.png"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "kd.png"), np.full((4, 6), 256, np.uint16))
    (tmp_path / "pairs.txt").write_text("k.png kd.png\n")
    # rosbag
    from test_data_rosbag import DEPTH_TOPIC, RGB_TOPIC, standard_messages, write_bag

    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, standard_messages())
    specs = {
        "ade20k": {"root": str(ade)},
        "nyu": {"path": str(tmp_path / "nyu.mat"), "use_labels": False},
        "kitti": {"layout": "pairs", "pairs_file": str(tmp_path / "pairs.txt")},
        "rosbag": {"path": str(tmp_path / "bag"), "rgb_topic": RGB_TOPIC, "depth_topic": DEPTH_TOPIC},
    }
    for kind, opts in specs.items():
        ds = build_dataset({"type": kind, **opts})
        s = ds[0]
        assert s["image"].dtype == np.uint8, kind
    assert isinstance(build_dataset({"type": "ade20k", **specs["ade20k"]}).dataset, ADE20KDataset)
    assert build_dataset({"type": "kitti", **specs["kitti"]})[0]["depth"][0, 0] == 1.0
    assert len(build_dataset({"type": "rosbag2", **specs["rosbag"]})) == 5  # the alias
    assert set(DATASET_TYPES) == {"folder", "nyu", "ade20k", "kitti", "rosbag", "synthetic"}


def test_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown dataset type 'coco'"):
        build_dataset({"type": "coco"})
    with pytest.raises(ValueError, match=r"unknown options for dataset type 'folder': \['rot'\]"):
        build_dataset({"type": "folder", "rot": "/x"})
    with pytest.raises(ValueError, match="'type' key"):
        build_dataset({"root": "/x"})
    with pytest.raises(ValueError, match="non-empty 'datasets'"):
        build_dataset({"type": "concat"})


def test_find_class_info_looks_through_wrappers_and_checks_agreement(tmp_path):
    from dpt_perception.training.data import SYNTHETIC_CLASS_NAMES, find_class_info

    write_folder_dataset(tmp_path / "f", 1, width=8, height=8)
    depth_only = tmp_path / "plain"
    (depth_only / "rgb").mkdir(parents=True)
    cv2.imwrite(str(depth_only / "rgb" / "x.png"), np.zeros((4, 4, 3), np.uint8))
    spec = {
        "type": "concat",
        "limit": 2,
        "datasets": [
            {"type": "folder", "root": str(depth_only)},
            {"type": "synthetic", "length": 2, "width": 8, "height": 8},
            {"type": "folder", "root": str(tmp_path / "f")},
        ],
    }
    names, colors = find_class_info(build_dataset(spec))
    assert names == list(SYNTHETIC_CLASS_NAMES) and colors[0] == (128, 64, 128)
    assert find_class_info(build_dataset({"type": "folder", "root": str(depth_only)})) == (None, None)
    (tmp_path / "f" / "classes.json").write_text('{"names": ["a", "b"]}')
    with pytest.raises(ValueError, match="disagree"):
        find_class_info(build_dataset(spec))
