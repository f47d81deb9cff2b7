"""ADE20K reader on an ADEChallengeData2016-style folder with real JPEG/PNG files."""

import cv2
import numpy as np
import pytest

from dpt_perception.training.data import ADE20KDataset, CorruptSampleError


@pytest.fixture
def ade(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(1)
    anns = {}
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in (1, 2):
            name = f"{prefix}_{i:08d}"
            img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), img)
            ann = rng.integers(0, 151, (20, 30)).astype(np.uint8)
            ann[0, :3] = [0, 1, 150]
            cv2.imwrite(str(root / "annotations" / split / f"{name}.png"), ann)
            anns[name] = ann
    rows = ["Idx,Ratio,Train,Val,Name"] + [f"{i},0.01,10,1,cls{i};synonym" for i in range(1, 151)]
    (root / "objectInfo150.csv").write_text("\n".join(rows) + "\n")
    return root, anns


def test_labels_shift_and_other_becomes_ignore(ade):
    root, anns = ade
    ds = ADE20KDataset(root, split="training")
    assert len(ds) == 2 and ds.num_classes == 150 and ds.class_names[:2] == ["cls1", "cls2"]
    s = ds[0]
    assert s["name"] == "ADE_train_00000001" and s["image"].shape == (20, 30, 3)
    assert s["labels"][0, :3].tolist() == [255, 0, 149]
    ann = anns["ADE_train_00000001"].astype(np.int64)
    np.testing.assert_array_equal(s["labels"], np.where(ann == 0, 255, ann - 1))
    assert s["has_labels"] and not s["has_depth"]
    assert ADE20KDataset(root, split="val")[1]["name"] == "ADE_val_00000002"


def test_invalid_annotation_values_and_missing_annotation(ade):
    root, _ = ade
    cv2.imwrite(
        str(root / "annotations" / "training" / "ADE_train_00000002.png"), np.full((20, 30), 200, np.uint8)
    )
    with pytest.raises(CorruptSampleError, match="0..150"):
        ADE20KDataset(root)[1]
    (root / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="no annotation"):
        ADE20KDataset(root, split="validation")
    with pytest.raises(ValueError, match="collides"):
        ADE20KDataset(root, ignore_index=3)
