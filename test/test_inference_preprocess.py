"""Network input size rules and normalisation (dpt_perception.inference.preprocess)."""
import cv2
import numpy as np
import pytest
import torch

from dpt_perception.inference.preprocess import net_input_shape, preprocess, preprocess_many


@pytest.mark.parametrize(("h", "w", "net", "rule", "expected"), [
    # 480x640 at 384: factors 0.8 (h) and 0.6 (w); "minimal" applies 0.8 to both -> 384x512.
    (480, 640, 384, "minimal", (384, 512)),
    (480, 640, 384, "lower_bound", (384, 512)),
    (480, 640, 384, "upper_bound", (288, 384)),
    (480, 640, 384, "fixed", (384, 384)),
    # KITTI 375x1242 at (352, 1216): w factor 0.979 is closer to 1 -> 367.1 x 1216 -> 352 x 1216.
    (375, 1242, (352, 1216), "minimal", (352, 1216)),
    # Upscaling: 240x320 at 384: factors 1.6 and 1.2 -> 1.2 -> 288 x 384.
    (240, 320, 384, "minimal", (288, 384)),
    # Portrait 640x480 -> 512x384.
    (640, 480, 384, "minimal", (512, 384)),
    # Already a multiple of 32 and net size equal: unchanged.
    (480, 640, (480, 640), "minimal", (480, 640)),
])
def test_net_input_shape_rules(h, w, net, rule, expected):
    assert net_input_shape(h, w, net, rule=rule) == expected


def test_net_input_shape_bounds_are_respected():
    # upper_bound must never exceed the target, lower_bound never fall below it.
    for h, w in [(333, 517), (101, 999), (720, 1280), (37, 41)]:
        uh, uw = net_input_shape(h, w, 384, rule="upper_bound")
        lh, lw = net_input_shape(h, w, 384, rule="lower_bound")
        assert uh <= 384 and uw <= 384 and uh % 32 == 0 and uw % 32 == 0
        assert lh % 32 == 0 and lw % 32 == 0
        if max(h, w) / min(h, w) <= 4:  # else the total-pixel bound wins (a 1:10 image: 384 x 3840)
            assert lh >= 384 and lw >= 384


@pytest.mark.parametrize("rule", ["minimal", "lower_bound", "upper_bound"])
@pytest.mark.parametrize(("h", "w", "net"), [
    (64, 8192, 64), (8192, 64, 64), (384, 8192, 384), (64, 8192, 384), (1, 100000, 64),
    (384, 20000, (384, 512)), (20000, 384, (384, 512)),
])
def test_net_input_shape_of_strips_is_bounded_by_total_pixels(h, w, net, rule):
    """A 64 x 8192 strip at target 64 x 64 kept 64 x 8192 under "minimal" (128x the target's pixels;
    45 s and +1.2 GB for one frame of the tiny model); now at most MAX_NET_AREA_RATIO x the target."""
    from dpt_perception.inference.preprocess import MAX_NET_AREA_RATIO

    net_h, net_w = (net, net) if isinstance(net, int) else net
    nh, nw = net_input_shape(h, w, net, rule=rule)
    assert nh % 32 == 0 and nw % 32 == 0 and nh >= 32 and nw >= 32
    assert nh * nw <= MAX_NET_AREA_RATIO * net_h * net_w, (nh, nw)
    assert (nh >= nw) == (h >= w) or min(nh, nw) == 32  # the long side stays the long side


def test_net_input_shape_of_ordinary_cameras_is_not_bounded():
    for h, w in [(480, 640), (720, 1280), (1080, 1920), (375, 1242), (1200, 1920)]:
        for net in (384, (384, 512), (352, 1216)):
            from dpt_perception.inference.preprocess import _rule_shape

            assert net_input_shape(h, w, net) == _rule_shape(h, w, net)


def test_net_input_shape_never_returns_zero():
    # Factors 1.6 (h) and 0.04 (w): 1.6 wins -> 8 x 320; the reference would round 8 down to 0.
    from dpt_perception.inference.preprocess import _rule_shape

    assert _rule_shape(5, 200, 8, rule="minimal") == (32, 320)
    # ... which holds 10 target-sized (at least one multiple: 32 x 32) areas: bounded to 4.
    assert net_input_shape(5, 200, 8, rule="minimal") == (32, 128)


@pytest.mark.parametrize("bad", [0, -32, (384,), (384, 0), "384", 3.5, (1.5, 2)])
def test_net_input_shape_rejects_bad_net_size(bad):
    with pytest.raises(ValueError, match="net_size"):
        net_input_shape(480, 640, bad)


def test_net_input_shape_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown resize rule 'square'"):
        net_input_shape(480, 640, 384, rule="square")


def _reference_normalise(rgb, shape, mean, std):
    resized = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    x = (resized.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return x.transpose(2, 0, 1)[None]


def test_preprocess_matches_independent_computation():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = preprocess(rgb, (32, 64), mean, std, "cpu")
    assert x.shape == (1, 3, 32, 64) and x.dtype == torch.float32 and x.is_contiguous()
    np.testing.assert_allclose(x.numpy(), _reference_normalise(rgb, (32, 64), mean, std), atol=1e-5)


def test_preprocess_without_resize_is_exact_and_accepts_views():
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    rgb_view = bgr[..., ::-1]  # not contiguous: a BGR -> RGB view
    x = preprocess(rgb_view, (32, 64), (0.5,) * 3, (0.5,) * 3, "cpu")
    expected = (np.ascontiguousarray(rgb_view).astype(np.float64) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(x[0].numpy(), expected.transpose(2, 0, 1), atol=1e-6)


def test_preprocess_many_stacks_in_order():
    a = np.full((32, 32, 3), 0, np.uint8)
    b = np.full((32, 32, 3), 255, np.uint8)
    x = preprocess_many([a, b], (32, 32), (0.5,) * 3, (0.5,) * 3, "cpu")
    assert x.shape == (2, 3, 32, 32)
    assert torch.allclose(x[0], torch.full_like(x[0], -1.0)) and torch.allclose(x[1], torch.ones_like(x[1]))


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((8, 8, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
])
def test_preprocess_rejects_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        preprocess(image, (32, 32), (0.5,) * 3, (0.5,) * 3, "cpu")


def test_preprocess_rejects_bad_std():
    with pytest.raises(ValueError, match="std values must be positive"):
        preprocess(np.zeros((8, 8, 3), np.uint8), (32, 32), (0.5,) * 3, (0.5, 0.0, 0.5), "cpu")
