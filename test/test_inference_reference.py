"""preprocessing="reference": the official DPT float pipeline, checked against an independent
implementation of the official transforms written here (numpy/cv2 on floats, no uint8 step)."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_perception.inference.labels import labels_bicubic
from dpt_perception.inference.pipeline import PerceptionPipeline
from dpt_perception.inference.preprocess import PREPROCESSING, preprocess, preprocess_many
from dpt_perception.model.testing import tiny_model

MEAN = STD = (0.5, 0.5, 0.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def official_size(h, w, net_h, net_w, multiple=32):
    """The official Resize(keep_aspect_ratio=True, resize_method="minimal"): the scale factor
    closer to 1 for both sides, each side np.round-ed to a multiple."""
    scale_h, scale_w = net_h / h, net_w / w
    if abs(1 - scale_w) < abs(1 - scale_h):
        scale_h = scale_w
    else:
        scale_w = scale_h
    return (int(np.round(scale_h * h / multiple) * multiple),
            int(np.round(scale_w * w / multiple) * multiple))


def official_transform(rgb_uint8, net_h, net_w, dtype=np.float64):
    """read_image (/ 255; float64 in the official code) -> Resize (cubic on the floats) ->
    NormalizeImage -> PrepareForNet (float32)."""
    img = rgb_uint8.astype(dtype) / dtype(255.0)
    h, w = official_size(img.shape[0], img.shape[1], net_h, net_w)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    img = (img - np.asarray(MEAN, dtype)) / np.asarray(STD, dtype)
    return np.ascontiguousarray(np.transpose(img, (2, 0, 1))).astype(np.float32)


def sharp_image(h, w, seed=0):
    """Random pixels with hard 0/255 edges, where cubic overshoot (and its clipping) is largest."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:, : w // 3] = 0
    img[:, w // 3: w // 3 + 3] = 255
    return img


@pytest.mark.parametrize("hw,net", [((48, 80), (64, 64)), ((37, 53), (96, 96)), ((64, 64), (64, 64)),
                                    ((120, 40), (96, 320)), ((88, 300), (96, 320))])
def test_reference_input_equals_the_official_float_transforms(hw, net):
    rgb = sharp_image(*hw)
    expected = official_transform(rgb, *net)
    pred = PerceptionPipeline(tiny_model(seed=0), device="cpu", net_size=net, preprocessing="reference")
    shape = pred.net_shape_for(*hw)
    assert shape == expected.shape[1:]
    x = preprocess(rgb, shape, MEAN, STD, "cpu", preprocessing="reference")
    assert x.dtype == torch.float32 and x.shape == (1, 3) + shape
    assert np.abs(x[0].numpy() - expected).max() <= 1e-6
    # the same transforms run entirely in float32 differ by OpenCV's float32 cubic rounding only
    assert np.abs(x[0].numpy() - official_transform(rgb, *net, dtype=np.float32)).max() <= 1e-5


def test_reference_keeps_the_overshoot_that_fast_clips():
    rgb = sharp_image(40, 60)
    ref = preprocess(rgb, (64, 96), MEAN, STD, preprocessing="reference")[0]
    fast = preprocess(rgb, (64, 96), MEAN, STD, preprocessing="fast")[0]
    assert ref.min() < -1.0 and ref.max() > 1.0  # outside [0, 1] before normalisation
    assert fast.min() >= -1.0 and fast.max() <= 1.0
    assert (ref - fast).abs().max() > 1e-2


def test_batches_equal_single_frames_and_bad_names_are_rejected():
    images = [sharp_image(40, 60, seed=s) for s in range(3)]
    batch = preprocess_many(images, (32, 64), MEAN, STD, preprocessing="reference")
    for i, im in enumerate(images):
        assert torch.equal(batch[i], preprocess(im, (32, 64), MEAN, STD, preprocessing="reference")[0])
    with pytest.raises(ValueError, match="unknown preprocessing 'exact'.*'fast', 'reference'"):
        preprocess_many(images, (32, 64), MEAN, STD, preprocessing="exact")
    with pytest.raises(ValueError, match="unknown preprocessing"):
        PerceptionPipeline(tiny_model(seed=0), device="cpu", preprocessing="official")
    assert PREPROCESSING == ("fast", "reference")


def test_predictor_reference_outputs_equal_the_official_script():
    """run_monodepth / run_segmentation: bicubic (align_corners=False) depth without a clamp,
    labels = argmax of the bicubically resized logits."""
    model = tiny_model(seed=0)
    rgb = sharp_image(45, 70, seed=3)
    pred = PerceptionPipeline(model, device="cpu", net_size=64, preprocessing="reference")
    out = pred.infer_image(rgb)
    x = torch.from_numpy(official_transform(rgb, 64, 64))[None]
    assert out.net_shape == tuple(x.shape[2:])
    with torch.inference_mode():
        raw = model(x)
    depth = F.interpolate(raw["depth"][:, None], size=(45, 70), mode="bicubic", align_corners=False)[0, 0]
    logits = F.interpolate(raw["segmentation"], size=(45, 70), mode="bicubic", align_corners=False)
    assert depth.max() > 0
    assert np.abs(out.depth - depth.numpy()).max() <= 1e-6 * max(1.0, float(depth.abs().max()))
    np.testing.assert_array_equal(out.labels, logits.argmax(1)[0].numpy())
    fast = PerceptionPipeline(model, device="cpu", net_size=64).infer_image(rgb)
    assert fast.depth.min() >= 0
    assert not np.array_equal(fast.depth, out.depth)


def test_reference_metric_depth_converts_at_network_resolution_then_resizes():
    model = tiny_model(seed=1, depth_kind="metric", depth_scale=0.5, depth_shift=0.1)
    rgb = sharp_image(50, 50, seed=4)
    out = PerceptionPipeline(model, device="cpu", net_size=64, preprocessing="reference").infer_image(rgb)
    x = torch.from_numpy(official_transform(rgb, 64, 64))[None]
    with torch.inference_mode():
        inv = model(x)["depth"]
    metres = 1.0 / (0.5 * inv + 0.1).clamp(min=1e-8)
    expected = F.interpolate(metres[:, None], size=(50, 50), mode="bicubic", align_corners=False)[0, 0]
    assert out.depth_kind == "metric"
    assert np.abs(out.depth - expected.numpy()).max() <= 1e-6 * float(expected.abs().max())


def test_labels_bicubic_in_chunks_equals_one_resize():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 9, 13, generator=gen)
    full = F.interpolate(logits, size=(30, 41), mode="bicubic", align_corners=False).argmax(1)
    for chunk_bytes in (1, 4 * 2 * 30 * 41 * 3, 1 << 30):  # one class, three classes, all at once
        assert torch.equal(labels_bicubic(logits, (30, 41), max_chunk_bytes=chunk_bytes), full)
