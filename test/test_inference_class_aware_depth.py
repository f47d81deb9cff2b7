"""Class-aware depth (sky too far, classes excluded from points), checked pixel by pixel against an
independent computation from the label image."""

import numpy as np
import pytest

from dpt_perception.inference.class_aware_depth import ClassAwareDepth, UnknownClassError
from dpt_perception.model.classes import ADE20K_CLASS_NAMES

NAMES = ("wall", "sky", "person", "car", "floor")


def _frame(seed=0, shape=(37, 53), n=5):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 20.0, shape).astype(np.float32)
    depth[rng.random(shape) < 0.05] = np.nan  # invalid pixels stay invalid
    labels = rng.integers(0, n, shape).astype(np.uint8)
    return depth, labels


def test_sky_is_too_far_by_default_and_absent_from_points():
    depth, labels = _frame()
    rules = ClassAwareDepth.from_names(NAMES)
    out = rules.apply(depth, labels)
    for v in range(depth.shape[0]):
        for u in range(depth.shape[1]):
            name = NAMES[labels[v, u]]
            if name == "sky":
                assert out.depth[v, u] == np.inf and np.isnan(out.points_depth[v, u])
            else:
                assert np.array_equal(out.depth[v, u], depth[v, u], equal_nan=True)
                assert np.array_equal(out.points_depth[v, u], depth[v, u], equal_nan=True)
    assert out.static_depth is None
    assert not np.isinf(depth).any(), "the input must not be modified"


def test_excluded_classes_absent_from_points_and_nan_in_static():
    depth, labels = _frame(1)
    rules = ClassAwareDepth.from_names(NAMES, too_far=["none"], exclude=["person", "Car"])
    out = rules.apply(depth, labels, want_static=True)
    moving = np.isin(labels, [NAMES.index("person"), NAMES.index("car")])
    np.testing.assert_array_equal(out.depth, depth)  # depth itself keeps every class
    assert np.isnan(out.points_depth[moving]).all() and np.isnan(out.static_depth[moving]).all()
    np.testing.assert_array_equal(out.points_depth[~moving], depth[~moving])
    np.testing.assert_array_equal(out.static_depth[~moving], depth[~moving])


def test_both_rules_together():
    depth, labels = _frame(2)
    out = ClassAwareDepth.from_names(NAMES, exclude=["person"]).apply(depth, labels, want_static=True)
    sky, person = labels == 1, labels == 2
    assert np.isinf(out.static_depth[sky]).all() and np.isnan(out.static_depth[person]).all()
    assert np.isnan(out.points_depth[sky | person]).all()
    rest = ~(sky | person)
    np.testing.assert_array_equal(out.points_depth[rest], depth[rest])


def test_ade20k_has_sky_and_150_classes_use_uint16_labels_safely():
    rules = ClassAwareDepth.from_names(ADE20K_CLASS_NAMES, exclude=["person"])
    assert rules.names(rules.too_far_ids) == ["sky"] and rules.names(rules.excluded_ids) == ["person"]
    depth, labels = _frame(3, n=150)
    out = rules.apply(depth, labels.astype(np.uint16))
    assert np.isinf(out.depth[labels == ADE20K_CLASS_NAMES.index("sky")]).all()


def test_auto_without_sky_is_off_but_explicit_sky_is_an_error():
    no_sky = ("wall", "floor", "person")
    assert not ClassAwareDepth.from_names(no_sky).active
    with pytest.raises(UnknownClassError, match=r"'sky'.*wall.*floor.*person"):
        ClassAwareDepth.from_names(no_sky, too_far=["sky"])


def test_unknown_names_are_rejected_with_the_valid_list():
    with pytest.raises(UnknownClassError, match=r"\['pedestrian'\].*'wall', 'sky', 'person', 'car', 'floor'"):
        ClassAwareDepth.from_names(NAMES, exclude=["pedestrian"])
    with pytest.raises(ValueError, match="stand alone"):
        ClassAwareDepth.from_names(NAMES, too_far=["auto", "car"])


def test_depth_only_model_with_rules_requested_is_an_error_but_defaults_pass():
    assert not ClassAwareDepth.from_names(None).active  # default: nothing to do, no error
    with pytest.raises(UnknownClassError, match="segmentation head"):
        ClassAwareDepth.from_names(None, exclude=["person"])


def test_no_labels_passes_depth_through():
    depth, _ = _frame(4)
    out = ClassAwareDepth.from_names(NAMES).apply(depth, None, want_static=True)
    assert out.depth is out.points_depth is out.static_depth
