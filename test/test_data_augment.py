"""Augmentation keeps image / depth / labels aligned; crop sizes, padding, flips, eval resize, collate."""

import numpy as np
import pytest
import torch

from dpt_perception.training.data import (
    EvalTransform,
    SyntheticDataset,
    TrainTransform,
    collate,
    make_sample,
    minimal_resize_shape,
)
from dpt_perception.training.data.synthetic import WALL, Camera, Scene, Wall, render_scene

LUT = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255], [40, 40, 40]],
    np.uint8,
)


def block_sample(h=120, w=200, block=16):
    """Image colour, depth and label all encode the same block id, so misalignment is visible."""
    y, x = np.mgrid[0:h, 0:w]
    labels = (x // block + 3 * (y // block)) % 7
    depth = 1.0 + 0.5 * labels.astype(np.float32)
    depth[:8, :8] = 0.0  # an invalid corner
    return make_sample(LUT[labels], name="blocks", depth=depth, labels=labels)


def denormalise(image):
    return (image.numpy().transpose(1, 2, 0) * 0.5 + 0.5) * 255.0


def interior(labels, ignore=255):
    """Pixels whose 3x3 neighbourhood has one label (away from block edges and padding)."""
    lab = labels.numpy()
    pad = np.pad(lab, 1, mode="edge")
    same = np.ones_like(lab, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= pad[1 + dy : 1 + dy + lab.shape[0], 1 + dx : 1 + dx + lab.shape[1]] == lab
    return same & (lab != ignore)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_depth_labels_aligned(seed):
    t = TrainTransform(
        net_size=128,
        scale_range=(0.6, 1.6),
        brightness=0,
        contrast=0,
        saturation=0,
        generator=torch.Generator().manual_seed(seed),
    )
    out = t(block_sample())
    assert out["image"].shape == (3, 128, 128) and out["image"].dtype == torch.float32
    assert out["depth"].shape == out["labels"].shape == out["depth_valid"].shape == (128, 128)
    assert out["labels"].dtype == torch.int64 and out["depth_valid"].dtype == torch.bool
    assert bool(out["has_depth"]) and bool(out["has_labels"])
    inside = interior(out["labels"])
    assert inside.sum() > 500
    lab = out["labels"].numpy()
    img = denormalise(out["image"])
    np.testing.assert_allclose(img[inside], LUT[lab[inside]], atol=3.0)
    dv = out["depth_valid"].numpy()
    np.testing.assert_array_equal(out["depth"].numpy()[dv], 1.0 + 0.5 * lab[dv])
    assert (out["depth"].numpy()[~dv] == 0).all()
    # padding (image smaller than the crop): invalid depth, ignore label, mean colour
    padded = lab == 255
    assert not dv[padded].any()
    assert np.abs(out["image"].numpy()[:, padded]).max(initial=0) == 0


def test_flip_mirrors_every_map_consistently():
    sample = block_sample()
    kw = dict(net_size=96, scale_range=(0.8, 1.3), brightness=0, contrast=0, saturation=0)
    a = TrainTransform(hflip_prob=0.0, generator=torch.Generator().manual_seed(3), **kw)(sample)
    b = TrainTransform(hflip_prob=1.0, generator=torch.Generator().manual_seed(3), **kw)(sample)
    for key in ("image", "depth", "depth_valid", "labels"):
        torch.testing.assert_close(b[key], a[key].flip(-1))


def test_crop_size_is_fixed_and_longest_side_matches_at_unit_scale():
    sample = block_sample(60, 150)
    out = TrainTransform(net_size=64, hflip_prob=0, generator=torch.Generator().manual_seed(0))(sample)
    lab = out["labels"].numpy()
    rows_with_content = np.flatnonzero((lab != 255).any(axis=1))
    # longest side 150 -> 64, so the 60-pixel side becomes round(60 * 64 / 150) = 26 rows (+ 64 columns)
    assert len(rows_with_content) == 26 and (lab[rows_with_content] != 255).all()


def test_colour_jitter_changes_only_the_image():
    sample = block_sample()
    kw = dict(net_size=96, hflip_prob=0.0)
    plain = TrainTransform(
        brightness=0, contrast=0, saturation=0, generator=torch.Generator().manual_seed(1), **kw
    )
    jitter = TrainTransform(
        brightness=0.4, contrast=0.4, saturation=0.4, generator=torch.Generator().manual_seed(1), **kw
    )
    a, b = plain(sample), jitter(sample)
    assert not torch.allclose(a["image"], b["image"])
    # jitter draws extra numbers after the crop: the geometry is identical
    torch.testing.assert_close(a["labels"], b["labels"])
    torch.testing.assert_close(a["depth"], b["depth"])
    assert b["image"].min() >= -1.0 and b["image"].max() <= 1.0


def test_intrinsics_follow_resize_crop_and_flip():
    """Wall pixels back-projected with the transformed K and depth land on the wall plane
    (camera x = -2 m; the flipped image sees it at +2 m)."""
    cam = Camera.from_fov(160, 120, 70.0, position=(0.0, 0.0, 1.2))
    r = render_scene(Scene(camera=cam, walls=[Wall(axis=1, offset=2.0)], noise_std=0.0))
    sample = make_sample(r["image"], name="wall", depth=r["depth"], labels=r["labels"], K=r["K"])
    for flip, side in ((0.0, -2.0), (1.0, 2.0)):
        t = TrainTransform(
            net_size=96, scale_range=(1.2, 1.2), hflip_prob=flip, generator=torch.Generator().manual_seed(5)
        )
        out = t(sample)
        K = out["K"].double().numpy()
        v, u = np.mgrid[0:96, 0:96]
        wall = (out["labels"].numpy() == WALL) & out["depth_valid"].numpy()
        assert wall.sum() > 200
        z = out["depth"].double().numpy()[wall]
        x_cam = (u[wall] - K[0, 2]) * z / K[0, 0]
        # nearest resampling moves a sample by < 1 source pixel: allow that much
        tol = z / r["K"][0, 0] * 1.0 + 1e-6
        assert (np.abs(x_cam - side) <= tol * 1.01 + 0.02).all()


def test_minimal_resize_rule_matches_the_reference_examples():
    assert minimal_resize_shape(480, 640, (384, 384)) == (384, 512)  # 0.8 closer to 1 than 0.6
    assert minimal_resize_shape(375, 1242, (384, 384)) == (384, 1280)  # KITTI: 1.024
    assert minimal_resize_shape(100, 100, (384, 384)) == (384, 384)
    assert minimal_resize_shape(352, 1216, (352, 1216)) == (352, 1216)


def test_eval_transform_keeps_targets_at_source_size_by_default():
    sample = block_sample(120, 200)
    out = EvalTransform(net_size=96)(sample)
    assert out["image"].shape[1:] == (96, 160) and out["image"].shape[1] % 32 == 0
    assert out["labels"].shape == (120, 200) and out["orig_size"].tolist() == [120, 200]
    np.testing.assert_array_equal(out["labels"].numpy(), sample["labels"])
    resized = EvalTransform(net_size=96, resize_targets=True)(sample)
    assert resized["labels"].shape == (96, 160) and resized["depth"].shape == (96, 160)
    square = EvalTransform(net_size=(64, 64), keep_aspect=False)(sample)
    assert square["image"].shape == (3, 64, 64)


def test_collate_batches_mixed_depth_only_and_labels_only_samples():
    h, w = 20, 30
    img = np.zeros((h, w, 3), np.uint8)
    depth_only = make_sample(img, name="d", depth=np.ones((h, w), np.float32))
    labels_only = make_sample(img, name="l", labels=np.ones((h, w), np.int64))
    t = TrainTransform(net_size=32, generator=torch.Generator().manual_seed(0))
    batch = collate([t(depth_only), t(labels_only)])
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["has_depth"].tolist() == [True, False] and batch["has_labels"].tolist() == [False, True]
    assert not batch["depth_valid"][1].any() and (batch["depth"][1] == 0).all()
    assert (batch["labels"][0] == 255).all() and batch["depth_valid"][0].any()
    assert batch["name"] == ["d", "l"]
    # samples lacking the keys entirely are filled the same way
    raw = t(depth_only)
    for key in ("labels", "has_labels"):
        raw.pop(key)
    b2 = collate([raw, t(labels_only)], ignore_index=-1)
    assert b2["has_labels"].tolist() == [False, True] and (b2["labels"][0] == -1).all()
    with pytest.raises(ValueError, match="batch_size=1"):
        collate([EvalTransform(96)(block_sample(120, 200)), EvalTransform(96)(block_sample(120, 190))])


def test_dataloader_end_to_end_with_synthetic_scenes():
    ds = SyntheticDataset(4, seed=1, width=64, height=48, transform=TrainTransform(net_size=32))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (2, 3, 32, 32) and b["K"].shape == (2, 3, 3) and b["has_depth"].all()


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, sample, n, transform):
        self.sample, self.n, self.transform = sample, n, transform

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.transform(self.sample)


def test_seeded_transform_gives_each_worker_its_own_stream():
    t = TrainTransform(net_size=48, scale_range=(0.5, 2.0), generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(_Repeat(block_sample(), 2, t), batch_size=None, num_workers=2)
    first, second = list(loader)  # index 0 from worker 0, index 1 from worker 1
    assert not torch.equal(first["labels"], second["labels"])
