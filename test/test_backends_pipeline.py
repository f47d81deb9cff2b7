"""The device data path (torch on CPU here) against the numpy/OpenCV reference implementations,
and bounded multi-camera batching over the scheduling module's mailboxes."""

import threading

import numpy as np
import pytest
import torch

from dpt_perception.inference import colorize, geometry
from dpt_perception.inference.backends import make_engine
from dpt_perception.inference.backends.agreement import aligned_depth_error
from dpt_perception.inference.backends.batching import CameraFrame, MultiCameraBatcher, make_worker
from dpt_perception.inference.backends.device_pipeline import DevicePipeline
from dpt_perception.inference.labels import labels_bilinear, labels_nearest
from dpt_perception.inference.predictor import Predictor, upsample_depth_numpy
from dpt_perception.inference.preprocess import preprocess
from dpt_perception.model.testing import tiny_model

P = np.array([[100.0, 0, 60.5, 0], [0, 110.0, 40.25, 0], [0, 0, 1, 0]])


def smooth_image(h, w, seed=0):
    """A camera-like frame: smooth gradients and blobs plus mild noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], axis=-1) * 230
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return tiny_model("vit_base", seed=2, net_size=[64, 64])


@pytest.fixture(scope="module")
def pipeline(model):
    return DevicePipeline(make_engine(model, "eager"))


def test_preprocess_matches_opencv_reference_within_one_grey_level(pipeline, model):
    img = smooth_image(90, 130)
    ref = preprocess(img, (64, 96), model.config.mean, model.config.std)
    got = pipeline.preprocess(pipeline.upload([img]), (64, 96))
    one_level = 1.0 / (255 * 0.5)
    assert got.shape == ref.shape == (1, 3, 64, 96)
    assert float((got - ref).abs().max()) <= one_level + 1e-6
    assert float((got - ref).abs().mean()) < 0.25 * one_level


def test_depth_upsampling_matches_reference(pipeline):
    low = torch.rand(1, 16, 24, generator=torch.Generator().manual_seed(0))
    got = pipeline.depth_at(low, (45, 70))[0].numpy()
    ref = upsample_depth_numpy(low[0].numpy().copy(), (45, 70))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert got.min() >= 0


def test_metric_conversion_matches_the_formula(pipeline):
    low = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1)) * 1000
    got = pipeline.depth_at(low, (8, 8), metric=[(0.000305, 0.1378), (1e-4, 0.0)])
    torch.testing.assert_close(got[0], 1 / torch.clamp(0.000305 * low[0] + 0.1378, min=1e-8))
    torch.testing.assert_close(got[1], 1 / torch.clamp(1e-4 * low[1], min=1e-8))


def _exact_centre_index(n_in, n_out):
    """floor((d + 0.5) * n_in / n_out) with exact rationals."""
    from fractions import Fraction

    return np.array([min(int((Fraction(2 * d + 1, 2) * n_in) // n_out), n_in - 1) for d in range(n_out)])


def test_nearest_labels_use_exact_pixel_centres(model):
    pipe = DevicePipeline(model, label_upsampling="nearest")
    logits = torch.randn(2, 5, 16, 24, generator=torch.Generator().manual_seed(2))
    got = pipe.labels_at(logits, (50, 77)).numpy()
    ids = logits.max(dim=1).indices.numpy()
    iy, ix = _exact_centre_index(16, 50), _exact_centre_index(24, 77)
    np.testing.assert_array_equal(got, ids[:, iy][:, :, ix])
    # OpenCV's INTER_NEAREST_EXACT (the Predictor's CPU path) rounds fixed-point and differs only
    # where a centre falls exactly on a source-pixel boundary (here 1 of 77 columns).
    ref = np.stack([labels_nearest(i.astype(np.uint8), (50, 77)) for i in ids])
    assert (got == ref).mean() >= 0.95


def test_bilinear_labels_match_reference(model):
    pipe = DevicePipeline(model, label_upsampling="bilinear")
    logits = torch.randn(2, 5, 16, 24, generator=torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(
        pipe.labels_at(logits, (50, 77)).numpy(), labels_bilinear(logits, (50, 77)).numpy()
    )


@pytest.mark.parametrize("invert", [False, True])
def test_depth_colours_match_reference(pipeline, invert):
    depth = torch.rand(1, 60, 80, generator=torch.Generator().manual_seed(3)) * 5 + 1
    depth[0, :3, :3] = float("nan")
    got = pipeline.colorize_depth(depth, invert=invert)[0].numpy()
    ref = colorize.colorize_depth(depth[0].numpy(), cmap="turbo", invert=invert)
    same = (got == ref).all(axis=-1).mean()
    assert same >= 0.999  # float rounding may move a pixel exactly on a LUT step by one entry
    assert (got[:3, :3] == 0).all()


def test_label_colours_match_reference(model, pipeline):
    labels = torch.randint(0, 5, (1, 30, 40), generator=torch.Generator().manual_seed(4))
    palette = np.asarray(model.config.class_colors, dtype=np.uint8)
    ref = colorize.colorize_labels(labels[0].numpy().astype(np.uint8), palette)
    np.testing.assert_array_equal(pipeline.colorize_labels(labels)[0].numpy(), ref)


def test_point_cloud_matches_geometry_reference(model):
    pipe = DevicePipeline(model, max_range=4.0)
    depth = torch.rand(50, 70, generator=torch.Generator().manual_seed(5)) * 6
    depth[0, 0] = 0.0
    depth[1, 1] = float("inf")
    got = pipe.back_project(depth, P).numpy()
    ref = geometry.PointCloudProjector(max_range=4.0).project(depth.numpy(), P)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert np.isnan(got[0, 0]).all() and np.isnan(got[1, 1]).all()
    rgb = smooth_image(50, 70, seed=1)
    packed = DevicePipeline.pack_rgb(torch.from_numpy(rgb)).numpy()
    np.testing.assert_array_equal(packed.view(np.uint32), geometry.pack_rgb_float(rgb).view(np.uint32))


def test_full_run_returns_only_requested_outputs_close_to_predictor(model, pipeline):
    frames = [smooth_image(72, 100, seed=s) for s in (0, 1)]
    out = pipeline.run(frames, outputs=("depth", "labels", "labels_color"))
    assert len(out) == 2 and set(out[0]) == {"depth", "labels", "labels_color"}
    assert out[0]["depth"].shape == (72, 100) and out[0]["depth"].dtype == np.float32
    assert out[0]["labels"].dtype == np.uint8 and out[0]["labels_color"].shape == (72, 100, 3)
    ref = Predictor(model, device="cpu").infer_batch(frames)
    for o, r in zip(out, ref):
        assert r.depth.std() > 0  # a non-trivial depth map, so the comparison means something
        # Resize on the device vs OpenCV differ by at most one grey level at the network input.
        assert aligned_depth_error(torch.from_numpy(o["depth"]), torch.from_numpy(r.depth)) < 2e-2
        assert (o["labels"] == r.labels).mean() >= 0.95
    only = pipeline.run(frames[:1], outputs=("depth_color",))
    assert set(only[0]) == {"depth_color"} and only[0]["depth_color"].dtype == np.uint8


def test_points_need_metric_depth_and_p(model, pipeline):
    frame = smooth_image(64, 64)
    with pytest.raises(ValueError, match="P matrix"):
        pipeline.run([frame], outputs=("points",))
    with pytest.raises(ValueError, match="metric depth"):
        pipeline.run([frame], outputs=("points",), P=P)
    out = pipeline.run([frame], outputs=("points_rgb", "depth"), P=P, metric_scale_shift=[(0.5, 0.1)])[0]
    assert out["points_rgb"].shape == (64, 64, 4)
    z = out["points_rgb"][..., 2]
    np.testing.assert_allclose(z, out["depth"], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown outputs"):
        pipeline.run([frame], outputs=("normals",))


def test_batcher_bounds_batches_and_groups_sizes(pipeline):
    frames = [smooth_image(64, 64, seed=i) for i in range(3)] + [
        smooth_image(48, 80, seed=i) for i in range(2)
    ]
    batcher = MultiCameraBatcher(pipeline, max_batch_size=2, outputs=("depth",))
    results = batcher.run([f"cam{i}" for i in range(5)], frames)
    assert sorted(batcher.batch_sizes) == [1, 2, 2]
    assert [r.key for r in results] == [f"cam{i}" for i in range(5)]
    for r, frame in zip(results, frames):
        single = pipeline.run([frame], outputs=("depth",))[0]["depth"]
        np.testing.assert_allclose(r.outputs["depth"], single, rtol=1e-4, atol=1e-5)
        assert r.outputs["depth"].shape == frame.shape[:2]


def test_worker_serves_several_cameras_through_mailboxes(pipeline):
    done = threading.Event()
    results = {}

    def on_result(r):
        results[r.key] = r
        if len(results) == 3:
            done.set()

    worker = make_worker(pipeline, max_batch_size=2, outputs=("depth", "labels"), on_result=on_result)
    with worker:
        for i in range(3):
            worker.submit(CameraFrame(smooth_image(64, 64, seed=i), meta={"cam": i}), key=f"cam{i}")
        assert done.wait(60), f"only {sorted(results)} finished; stats {worker.stats()}"
    assert set(results) == {"cam0", "cam1", "cam2"}
    assert all(r.frame.meta["cam"] == int(r.key[-1]) for r in results.values())
    assert max(worker.batcher.batch_sizes) <= 2
    assert worker.stats().errors == 0


def test_depth_colours_of_an_all_invalid_frame_are_black(pipeline):
    depth = torch.full((1, 12, 16), float("nan"))
    depth[0, 0, 0] = float("inf")
    assert int(pipeline.colorize_depth(depth).sum()) == 0
