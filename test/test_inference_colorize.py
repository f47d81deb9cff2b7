"""Depth and label colourising (dpt_perception.inference.colorize)."""
import numpy as np
import pytest

from dpt_perception.inference.colorize import (
    colorize_depth,
    colorize_labels,
    colormap_lut,
    robust_range,
)
from dpt_perception.model.classes import default_palette


@pytest.mark.parametrize("name", ["turbo", "inferno"])
def test_lut_is_rgb_and_matches_known_ends(name):
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    if name == "inferno":  # inferno runs from near-black to pale yellow (R > B at the top)
        assert lut[0].sum() < 30 and lut[255, 0] > 200 and lut[255, 2] < lut[255, 0]
    else:  # turbo runs from dark blue (B > R) to dark red (R > B)
        assert lut[0, 2] > lut[0, 0] and lut[255, 0] > lut[255, 2]


def test_colorize_depth_maps_range_ends_and_blacks_out_invalid():
    depth = np.array([[1.0, 2.0, 3.0, np.nan, np.inf]], np.float32)
    img = colorize_depth(depth, "turbo", vmin=1.0, vmax=3.0)
    lut = colormap_lut("turbo")
    assert img.shape == (1, 5, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, 0], lut[0])
    np.testing.assert_array_equal(img[0, 2], lut[255])
    np.testing.assert_array_equal(img[0, 1], lut[127])
    np.testing.assert_array_equal(img[0, 3:], 0)
    inverted = colorize_depth(depth, "turbo", vmin=1.0, vmax=3.0, invert=True)
    np.testing.assert_array_equal(inverted[0, 0], lut[255])
    np.testing.assert_array_equal(inverted[0, 2], lut[0])


def test_robust_range_ignores_outliers_and_nan():
    values = np.linspace(0.0, 1.0, 10001).astype(np.float32)
    values[:50] = -1e6
    values[-50:] = np.nan
    lo, hi = robust_range(values, (2, 98))
    assert 0.0 < lo < 0.05 and 0.95 < hi < 1.0
    assert robust_range(np.full(10, np.nan)) is None
    assert (colorize_depth(np.full((3, 3), np.nan, np.float32)) == 0).all()


def test_colorize_labels_palette_and_blend():
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    colours = colorize_labels(labels, palette)
    np.testing.assert_array_equal(colours, palette[labels])
    image = np.full((2, 2, 3), 100, np.uint8)
    blended = colorize_labels(labels, palette, image=image, alpha=0.25)
    expected = 0.75 * image + 0.25 * palette[labels].astype(np.float64)
    assert np.abs(blended.astype(np.float64) - expected).max() <= 1.0


def test_colorize_labels_errors():
    palette = default_palette(3)
    with pytest.raises(ValueError, match=r"label ids must be in \[0, 2\]"):
        colorize_labels(np.array([[3]], np.uint8), palette)
    with pytest.raises(ValueError, match="integer"):
        colorize_labels(np.zeros((2, 2), np.float32), palette)
    with pytest.raises(ValueError, match="alpha"):
        colorize_labels(np.zeros((2, 2), np.uint8), palette, np.zeros((2, 2, 3), np.uint8), alpha=2.0)
