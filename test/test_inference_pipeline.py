"""PerceptionPipeline on the real tiny DPT model: outputs against independent computations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_perception.inference import colorize, geometry
from dpt_perception.inference.labels import labels_bilinear
from dpt_perception.inference.pipeline import PerceptionPipeline, Prediction, resolve_device
from dpt_perception.inference.preprocess import preprocess
from dpt_perception.model import DPT, DPTConfig
from dpt_perception.model.depth_units import metres_from_relative
from dpt_perception.model.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(**overrides) -> DPT:
    return tiny_model(seed=0, **overrides)


def rgb_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def raw_outputs(model, rgb, net_shape):
    x = preprocess(rgb, net_shape, model.config.mean, model.config.std, "cpu")
    with torch.inference_mode():
        return model(x)


def test_depth_and_labels_match_the_reference_computation():
    model = make_model()
    pred = PerceptionPipeline(model, device="cpu", net_size=64)
    rgb = rgb_image(48, 80)
    out = pred.infer_image(rgb)
    assert isinstance(out, Prediction)
    assert out.net_shape == (32, 64)  # factors 1.33 (h) and 0.8 (w): 0.8 wins -> 38.4 x 64 -> 32 x 64
    raw = raw_outputs(model, rgb, out.net_shape)
    ref_depth = F.interpolate(raw["depth"][:, None], size=(48, 80), mode="bicubic",
                              align_corners=False)[0, 0].clamp(min=0).numpy()
    assert out.depth.shape == (48, 80) and out.depth.dtype == np.float32
    assert out.depth_kind == "relative"
    assert ref_depth.max() > 0
    np.testing.assert_allclose(out.depth, ref_depth, rtol=1e-3, atol=1e-4 * ref_depth.max())
    assert out.labels.shape == (48, 80) and out.labels.dtype == np.uint8
    assert set(out.timings) >= {"preprocess", "forward", "depth", "labels", "total"}


def test_nearest_labels_are_low_resolution_argmax_repeated():
    model = make_model()
    pred = PerceptionPipeline(model, device="cpu", net_size=64, label_upsampling="nearest")
    rgb = rgb_image(128, 128, seed=1)  # exactly 2x the network size: no rounding ties
    out = pred.infer_image(rgb)
    assert out.net_shape == (64, 64)
    ids = raw_outputs(model, rgb, (64, 64))["segmentation"].argmax(1)[0].numpy()
    expected = ids.repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(out.labels, expected)


def test_banded_bilinear_equals_one_shot_interpolation():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 33, 45)
    for size in [(50, 70), (20, 30), (33, 45), (130, 17)]:
        got = labels_bilinear(logits, size, max_band_bytes=4 * 2 * 7 * size[1] * 8)  # 8-row bands
        ref = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)
        assert got.shape == (2, *size)
        assert (got == ref).double().mean() > 0.999


def test_bilinear_labels_follow_the_reference_path():
    model = make_model()
    pred = PerceptionPipeline(model, device="cpu", net_size=64, label_upsampling="bilinear")
    rgb = rgb_image(50, 70, seed=2)
    out = pred.infer_image(rgb)
    logits = raw_outputs(model, rgb, out.net_shape)["segmentation"]
    expected = F.interpolate(logits, size=(50, 70), mode="bilinear", align_corners=False).argmax(1)[0]
    # Resolved from half-resolution logits: equal up to float rounding (a near-tie may flip).
    assert np.mean(out.labels == expected.numpy()) > 0.999
    # Argmax at network resolution + nearest ids agrees except along class boundaries.
    nearest_pipeline = PerceptionPipeline(model, device="cpu", net_size=64, label_upsampling="nearest")
    nearest = nearest_pipeline.infer_image(rgb)
    assert np.mean(nearest.labels == out.labels) > 0.7


def test_metric_model_converts_before_upsampling():
    model = make_model(depth_kind="metric", depth_scale=0.5, depth_shift=0.1)
    pred = PerceptionPipeline(model, device="cpu", net_size=64)
    rgb = rgb_image(64, 64, seed=3)
    out = pred.infer_image(rgb)
    assert out.depth_kind == "metric"
    raw = raw_outputs(model, rgb, (64, 64))["depth"][0].numpy()
    np.testing.assert_allclose(out.depth, 1.0 / np.maximum(0.5 * raw + 0.1, 1e-8), rtol=1e-5)


def test_batch_groups_by_shape_and_matches_single_frames():
    model = make_model()
    calls = []
    pred = PerceptionPipeline(model, device="cpu", net_size=64)
    pred.runner.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    images = [rgb_image(48, 80, 0), rgb_image(64, 64, 1), rgb_image(48, 80, 2)]
    batch = pred.infer_batch(images)
    assert sorted(calls) == [1, 2]  # one forward per shape, the two 48x80 frames together
    assert [p.source_shape for p in batch] == [(48, 80), (64, 64), (48, 80)]
    for image, got in zip(images, batch):
        single = pred.infer_image(image)
        np.testing.assert_allclose(got.depth, single.depth, rtol=1e-4, atol=1e-5)
        assert np.mean(got.labels == single.labels) > 0.99


def test_unrequested_outputs_are_not_computed():
    pred = PerceptionPipeline(make_model(), device="cpu", net_size=64, outputs=("depth",))
    out = pred.infer_image(rgb_image(32, 32))
    assert out.labels is None and out.depth is not None
    out = pred.infer_image(rgb_image(32, 32), outputs=("labels",))
    assert out.depth is None and out.depth_kind is None and out.labels is not None
    assert pred.infer_image(rgb_image(32, 32)).labels is None  # the pipeline's own default again


class HeadSelectingDPT(DPT):
    """A DPT that records which heads each run asked its encoder/necks for (forward and the
    pipeline's composed label path both go through forward_features)."""

    def __init__(self, config):
        super().__init__(config)
        self.requested = []

    def forward_features(self, pixel_values, heads=None):
        self.requested.append(heads)
        return super().forward_features(pixel_values, heads)


def test_unrequested_heads_are_not_requested_from_models_that_can_skip_them():
    torch.manual_seed(0)
    model = HeadSelectingDPT(DPTConfig.tiny()).eval()
    pred = PerceptionPipeline(model, device="cpu", net_size=64, outputs=("depth",))
    assert pred.infer_image(rgb_image(32, 32)).labels is None
    assert pred.infer_image(rgb_image(32, 32), outputs=("labels",)).depth is None
    pred.infer_image(rgb_image(32, 32), outputs=("depth", "labels"))
    assert model.requested == [("depth",), ("segmentation",), ("depth", "segmentation")]


def test_depth_only_model_has_no_labels():
    pred = PerceptionPipeline(make_model(heads=("depth",)), device="cpu", net_size=64)
    out = pred.infer_image(rgb_image(40, 40))
    assert out.labels is None and out.depth.shape == (40, 40)


def test_logits_at_network_resolution():
    pred = PerceptionPipeline(make_model(), device="cpu", net_size=64, outputs=("depth", "labels", "logits"))
    rgb = rgb_image(48, 80)
    out = pred.infer_image(rgb)
    assert out.logits.shape == (5, 32, 64) and out.logits.dtype == np.float32
    raw = raw_outputs(pred.model, rgb, (32, 64))["segmentation"][0].numpy()
    np.testing.assert_allclose(out.logits, raw, rtol=1e-5, atol=1e-6)


def test_many_classes_give_uint16_labels():
    pred = PerceptionPipeline(make_model(num_classes=300), device="cpu", net_size=64)
    out = pred.infer_image(rgb_image(32, 32))
    assert out.labels.dtype == np.uint16 and out.labels.max() < 300


def test_set_net_size_validates_and_applies():
    pred = PerceptionPipeline(make_model(), device="cpu", net_size=64)
    assert pred.infer_image(rgb_image(48, 80)).net_shape == (32, 64)
    pred.set_net_size((32, 64))
    assert pred.net_size == (32, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        pred.set_net_size(100)
    with pytest.raises(ValueError, match="net_size"):
        pred.set_net_size((64,))
    assert pred.net_size == (32, 64)  # unchanged after a rejected value
    # at 128: factors 2.67 (h) and 1.6 (w) -> 1.6 -> 76.8 x 128 -> 64 x 128
    assert pred.infer_image(rgb_image(48, 80)).net_shape == (32, 64)
    pred.set_net_size(128)
    assert pred.infer_image(rgb_image(48, 80)).net_shape == (64, 128)
    pred.set_net_size(None)
    assert pred.net_size == tuple(pred.config.net_size)


def test_bf16_precision_runs_on_cpu():
    model = make_model()
    ref = PerceptionPipeline(model, device="cpu", net_size=64).infer_image(rgb_image(64, 64))
    bf16 = PerceptionPipeline(model, device="cpu", precision="bf16", net_size=64)
    out = bf16.infer_image(rgb_image(64, 64))
    assert out.depth.dtype == np.float32 and np.all(np.isfinite(out.depth))
    rel = np.linalg.norm(out.depth - ref.depth) / np.linalg.norm(ref.depth)
    assert rel < 0.1


def test_device_and_precision_validation():
    model = make_model()
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        PerceptionPipeline(model, device="cpu", precision="int8")
    with pytest.raises(ValueError, match="unknown label_upsampling"):
        PerceptionPipeline(model, device="cpu", label_upsampling="cubic")
    with pytest.raises(ValueError, match="unknown device"):
        PerceptionPipeline(model, device="tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            PerceptionPipeline(model, device="cuda")
        with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
            PerceptionPipeline(model, device="cpu", precision="fp16")
    with pytest.raises(TypeError, match="config"):
        PerceptionPipeline(torch.nn.Conv2d(3, 1, 1), device="cpu")


def test_bad_inputs_have_clear_errors():
    pred = PerceptionPipeline(make_model(), device="cpu", net_size=64)
    with pytest.raises(ValueError, match="uint8"):
        pred.infer_image(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="list"):
        pred.infer_batch(np.zeros((32, 32, 3), np.uint8))
    assert pred.infer_batch([]) == []


def test_a_strip_image_runs_at_a_bounded_network_size():
    """A 64 x 8192 strip at net_size 64 x 64: "minimal" kept 64 x 8192 (128x the target's pixels) and
    the label resampler composed dense 8192 x 8192 matrices: 45 s and +1.2 GB for one frame. Now the
    network input is bounded by total pixels and the outputs still come at the image's size."""
    from dpt_perception.inference.preprocess import MAX_NET_AREA_RATIO

    predictor = PerceptionPipeline(make_model(num_classes=5, net_size=[64, 64]), device="cpu")
    for shape in ((64, 8192), (8192, 64)):
        out = predictor.infer_image(rgb_image(*shape))
        assert out.net_shape[0] * out.net_shape[1] <= MAX_NET_AREA_RATIO * 64 * 64, out.net_shape
        assert out.depth.shape == shape and out.labels.shape == shape
        assert np.isfinite(out.depth).all()


# ---- outputs beyond depth and labels: the functions the node publishes through ----------------
P_CAMERA = np.array([[60.0, 0, 39.5, 0], [0, 62.0, 23.75, 0], [0, 0, 1, 0]])


def test_only_the_requested_outputs_come_back():
    pipeline = PerceptionPipeline(make_model(), device="cpu", net_size=64)
    rgb = rgb_image(48, 80)
    both = pipeline.infer_image(rgb)
    colours = pipeline.infer_image(rgb, outputs=("depth_color", "labels_color"))
    assert colours.depth is None and colours.labels is None and colours.points is None
    np.testing.assert_array_equal(colours.depth_color, colorize.colorize_depth(both.depth))
    np.testing.assert_array_equal(colours.labels_color,
                                  colorize.colorize_labels(both.labels, pipeline.palette))
    assert colours.depth_color.shape == colours.labels_color.shape == (48, 80, 3)
    with pytest.raises(ValueError, match="unknown outputs \\['normals'\\]"):
        pipeline.infer_image(rgb, outputs=("normals",))


def test_points_are_the_geometry_projection_of_metric_depth():
    model = make_model(depth_kind="metric", depth_scale=0.5, depth_shift=0.1)
    pipeline = PerceptionPipeline(model, device="cpu", net_size=64, max_range=4.0)
    rgb = rgb_image(48, 80)
    out = pipeline.run([rgb, rgb], outputs=("depth", "points", "depth_color"), P=P_CAMERA)
    for frame in out:
        assert frame.depth_kind == "metric"
        expected = geometry.PointCloudProjector(max_range=4.0).project(frame.depth, P_CAMERA)
        np.testing.assert_array_equal(frame.points, expected)
        # metres: near = warm as for inverse depth (the colour map runs the other way)
        np.testing.assert_array_equal(frame.depth_color, colorize.colorize_depth(frame.depth, invert=True))
    assert np.isfinite(out[0].points).any()


def test_a_relative_model_gives_metres_and_points_with_a_per_frame_pair():
    pipeline = PerceptionPipeline(make_model(), device="cpu", net_size=64)
    rgb = rgb_image(48, 80)
    relative = pipeline.infer_image(rgb).depth
    with pytest.raises(ValueError, match="3x4 projection"):
        pipeline.run([rgb], outputs=("points",))
    with pytest.raises(ValueError, match="points need metric depth: frames \\[1\\]"):
        pipeline.run([rgb, rgb], outputs=("points",), P=P_CAMERA, metric_scale_shift=[(0.5, 0.1), None])
    with pytest.raises(ValueError, match="one entry .* per frame: 2 frames, got 1"):
        pipeline.run([rgb, rgb], metric_scale_shift=[(0.5, 0.1)])
    fixed, kept = pipeline.run([rgb, rgb], outputs=("depth", "points"), P=[P_CAMERA, P_CAMERA],
                               metric_scale_shift=[(0.5, 0.1)] * 2)
    assert fixed.depth_kind == kept.depth_kind == "metric"
    # (a batch of two runs other matmul kernels than one frame: equal to float32 rounding)
    np.testing.assert_allclose(fixed.depth, metres_from_relative(relative, 0.5, 0.1), rtol=1e-5)
    np.testing.assert_array_equal(fixed.points[..., 2][np.isfinite(fixed.points[..., 2])],
                                  fixed.depth[np.isfinite(fixed.points[..., 2])])
    mixed = pipeline.run([rgb, rgb], outputs=("depth",), metric_scale_shift=[(0.5, 0.1), None])
    assert [m.depth_kind for m in mixed] == ["metric", "relative"]
    np.testing.assert_allclose(mixed[1].depth, relative, rtol=1e-5)
