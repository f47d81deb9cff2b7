"""Class tables: the ADE20K class names and the one default colour scheme for class ids.

Everything that names or colours classes imports from here: `DPTConfig` (the class names and
colours a model config gets when none are given), the colourising of label images
(`dpt_perception.inference.colorize`), the GPU output pipeline and the ADE20K reader.
"""

from __future__ import annotations

import colorsys

import numpy as np

# ADE20K SceneParsing benchmark, 150 classes, in id order (id 0 = "wall"; the dataset's
# "other" label 0 is dropped by the benchmark, so network class i is the dataset's class i+1).
ADE20K_CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


def default_class_colors(num_classes: int) -> list[list[int]]:
    """Distinct, deterministic RGB colours: hues spaced by the golden ratio, alternating brightness
    (value >= 0.7, so no class is black: black stays reserved for "no data"). Prefix-stable: the
    first n colours do not depend on how many are asked for."""
    colors = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.7
        saturation = 0.65 if i % 3 else 0.9
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
        colors.append([int(round(r * 255)), int(round(g * 255)), int(round(b * 255))])
    return colors


def default_palette(n: int) -> np.ndarray:
    """`default_class_colors(n)` as an (n, 3) uint8 RGB array (a lookup table for label images)."""
    if n < 1:
        raise ValueError(f"palette size must be >= 1, got {n}")
    return np.asarray(default_class_colors(n), dtype=np.uint8).reshape(n, 3)


ADE20K_PALETTE = default_palette(len(ADE20K_CLASS_NAMES))
ADE20K_PALETTE.setflags(write=False)
