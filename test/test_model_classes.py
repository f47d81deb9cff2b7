"""The one class table (dpt_perception.model.classes): ADE20K names and the default class colours,
used by model configs, label colourising and the inference pipeline alike."""
import numpy as np

from dpt_perception.inference import colorize, pipeline
from dpt_perception.model import DPTConfig
from dpt_perception.model.classes import (
    ADE20K_CLASS_NAMES,
    ADE20K_PALETTE,
    default_class_colors,
    default_palette,
)


def test_default_palette_is_distinct_and_never_black():
    pal = default_palette(300)
    assert pal.shape == (300, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal}) == 300
    assert not (pal == 0).all(axis=1).any()
    np.testing.assert_array_equal(default_palette(10), pal[:10])  # prefix-stable


def test_ade20k_table():
    assert len(ADE20K_CLASS_NAMES) == 150 and len(set(ADE20K_CLASS_NAMES)) == 150
    assert ADE20K_CLASS_NAMES[:3] == ("wall", "building", "sky") and ADE20K_CLASS_NAMES[-1] == "flag"
    assert ADE20K_CLASS_NAMES[12] == "person" and ADE20K_CLASS_NAMES[20] == "car"
    assert all(name == name.strip().lower() and name for name in ADE20K_CLASS_NAMES)
    assert ADE20K_PALETTE.shape == (150, 3) and ADE20K_PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in ADE20K_PALETTE}) == 150


def test_every_user_takes_the_one_table():
    config = DPTConfig.tiny(num_classes=150)
    assert config.class_names == list(ADE20K_CLASS_NAMES)
    np.testing.assert_array_equal(np.asarray(config.class_colors, np.uint8), ADE20K_PALETTE)
    assert DPTConfig.tiny(num_classes=7).class_colors == default_class_colors(7)
    labels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(colorize.colorize_labels(labels), default_palette(6)[labels])
    assert pipeline.default_palette is default_palette
