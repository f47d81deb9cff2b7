"""NYU Depth v2 reader on a real MATLAB v7.3 (HDF5) file written with h5py in the dataset's layout."""

import h5py
import numpy as np
import pytest

from dpt_perception.training.data import NYU_K, CorruptSampleError, NYUDepthV2Dataset

H, W, N = 48, 64, 3


def write_nyu_mat(path, images_hwc, depths_hw, labels_hw, raw_depths_hw=None, names=None):
    """Write arrays the way MATLAB -v7.3 stores them: column-major, so h5py sees reversed axes."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("images", data=np.stack([im.transpose(2, 1, 0) for im in images_hwc]))  # (N,3,W,H)
        f.create_dataset("depths", data=np.stack([d.T for d in depths_hw]))  # (N,W,H)
        f.create_dataset("labels", data=np.stack([lb.T for lb in labels_hw]).astype(np.uint16))
        if raw_depths_hw is not None:
            f.create_dataset("rawDepths", data=np.stack([d.T for d in raw_depths_hw]))
        if names is not None:
            refs = f.create_group("#refs#")
            ref_list = []
            for i, name in enumerate(names):
                ds = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], np.uint16))
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ref_list.append(ds.ref)
            f.create_dataset("names", data=np.array([ref_list], dtype=h5py.ref_dtype))
    # MATLAB's 512-byte user block header, as in real .mat v7.3 files
    with open(path, "r+b") as fh:
        fh.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        )


@pytest.fixture
def nyu(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)]
    depths = [rng.uniform(0.5, 9.0, (H, W)).astype(np.float32) for _ in range(N)]
    raw = [d.copy() for d in depths]
    raw[1][:5, :7] = 0.0  # Kinect holes
    labels = [rng.integers(0, 895, (H, W)) for _ in range(N)]
    labels[0][0, :4] = [0, 1, 894, 40]
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    write_nyu_mat(path, images, depths, labels, raw, names=[f"name{i}" for i in range(1, 895)])
    return path, images, depths, raw, labels


def test_axes_are_transposed_back_to_hwc(nyu):
    path, images, depths, _, labels = nyu
    with h5py.File(path) as f:
        assert f["images"].shape == (N, 3, W, H) and f["depths"].shape == (N, W, H)
    ds = NYUDepthV2Dataset(path, ignore_index=-1)
    assert len(ds) == N
    s = ds[2]
    np.testing.assert_array_equal(s["image"], images[2])
    np.testing.assert_array_equal(s["depth"], depths[2])
    assert s["depth"].shape == (H, W) and s["depth_valid"].all()
    np.testing.assert_array_equal(s["labels"], np.where(labels[2] == 0, -1, labels[2] - 1))
    assert ds.class_names[0] == "name1" and ds.num_classes == 894
    assert "K" not in s  # not the 640x480 NYU resolution: no intrinsics


def test_class_mapping_raw_depth_and_indices(nyu):
    path, _, depths, raw, labels = nyu
    mapping = np.arange(894) % 40 + 1  # map[id-1] -> 1..40
    ds = NYUDepthV2Dataset(path, indices=[1, 0], raw_depth=True, class_mapping=mapping)
    assert len(ds) == 2 and ds.num_classes == 40
    s1, s0 = ds[0], ds[1]
    assert (
        s1["name"] == "nyu_0001"
        and not s1["depth_valid"][:5, :7].any()
        and s1["depth_valid"].sum() == H * W - 35
    )
    np.testing.assert_array_equal(s1["depth"][5:], raw[1][5:])
    # id 0 -> ignore, id 1 -> 0, id 894 -> (893 % 40 + 1) - 1 = 13, id 40 -> 39
    assert s0["labels"][0, :4].tolist() == [255, 0, 13, 39]
    expected = np.where(labels[0] == 0, 255, mapping[np.maximum(labels[0], 1) - 1] - 1)
    np.testing.assert_array_equal(s0["labels"], expected)


def test_ignore_index_colliding_with_classes_is_refused(nyu):
    with pytest.raises(ValueError, match="class_mapping"):
        NYUDepthV2Dataset(nyu[0])  # 894 classes but ignore_index 255


def test_depth_only_and_nyu_intrinsics_at_full_resolution(tmp_path):
    img = np.zeros((480, 640, 3), np.uint8)
    img[10, 600] = (255, 0, 0)  # a row/column-asymmetric marker checks orientation
    depth = np.ones((480, 640), np.float32)
    path = tmp_path / "nyu.mat"
    write_nyu_mat(path, [img], [depth], [np.zeros((480, 640), np.int64)])
    s = NYUDepthV2Dataset(path, use_labels=False)[0]
    assert tuple(s["image"][10, 600]) == (255, 0, 0) and not s["has_labels"]
    np.testing.assert_allclose(s["K"], NYU_K)


def test_bad_layout_and_bad_labels(tmp_path, nyu):
    bad = tmp_path / "bad.mat"
    with h5py.File(bad, "w") as f:
        f.create_dataset("images", data=np.zeros((1, 3, 4, 5), np.uint8))
        f.create_dataset("depths", data=np.zeros((1, 5, 4), np.float32))
    with pytest.raises(ValueError, match="'depths' is"):
        NYUDepthV2Dataset(bad, use_labels=False)
    path = nyu[0]
    with h5py.File(path, "r+") as f:
        f["labels"][0, 0, 0] = 2000
    with pytest.raises(CorruptSampleError, match="label ids"):
        NYUDepthV2Dataset(path, ignore_index=-1)[0]
