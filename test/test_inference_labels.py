"""Exact label resampling (inference/labels.py) against the reference: torch's bilinear resizes of
every logit, then argmax."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_perception.inference import labels as labels_module
from dpt_perception.inference.labels import (
    axis_taps,
    exact_labels,
    label_dtype,
    labels_from_logits,
    resize_stages,
)
from dpt_perception.model.testing import layout_logits, voronoi_layout


def region_logits(classes: int, h: int, w: int, regions: int, seed: int) -> torch.Tensor:
    """Scene-like logits: a winner with a margin inside regions, near-ties along boundaries, third
    classes close by, junctions of three regions."""
    return layout_logits(voronoi_layout(h, w, regions, classes, seed), classes, seed)


def reference_ids(logits: torch.Tensor, size, lowres: bool) -> torch.Tensor:
    if lowres:
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def assert_matches_reference(got: np.ndarray, resized: torch.Tensor, tie: float = 1e-4) -> None:
    """Equal ids, except where the reference's top two logits are within float rounding."""
    ref = resized.argmax(1)[0].numpy()
    assert got.shape == ref.shape
    differ = got != ref
    if differ.any():
        top2 = resized[0].topk(2, dim=0).values.numpy()
        gap = (top2[0] - top2[1])[differ]
        assert gap.max() < tie * max(1.0, float(resized.abs().max())), f"{differ.sum()} pixels differ"
        assert differ.mean() < 1e-3


@pytest.mark.parametrize(
    "classes, logits_hw, size",
    [
        (150, (48, 64), (120, 160)),  # the node's case: x2 head upsample, then up to the camera
        (150, (48, 64), (96, 128)),  # camera at network size: the second resize is the identity
        (150, (48, 64), (60, 50)),  # downsampling on one axis, non-uniform aspect
        (7, (33, 45), (67, 31)),  # odd sizes
        (2, (16, 16), (200, 3)),  # extreme aspect
        (300, (20, 24), (45, 50)),  # > 256 classes: 16-bit ids
    ],
)
def test_exact_labels_equal_the_reference_from_half_resolution_logits(classes, logits_hw, size):
    for seed, regions in [(0, 4), (1, 12)]:
        logits = region_logits(classes, *logits_hw, regions, seed)
        got = labels_from_logits(logits, size, lowres=True)[0]
        assert got.dtype == label_dtype(classes)
        assert_matches_reference(got, reference_ids(logits, size, lowres=True))


def test_exact_labels_from_network_resolution_logits_and_batches():
    logits = torch.cat([region_logits(21, 40, 56, 6, seed) for seed in (3, 4)])
    got = labels_from_logits(logits, (75, 101), lowres=False)
    for frame, ids in enumerate(got):
        resized = F.interpolate(logits[frame:frame + 1], size=(75, 101), mode="bilinear", align_corners=False)
        assert_matches_reference(ids, resized)


def test_bands_resolved_in_parallel_equal_one_pass():
    logits = region_logits(40, 60, 40, 9, seed=6)
    size = (230, 150)
    one = labels_from_logits(logits, size, lowres=True, threads=1)[0]
    for threads in (2, 3):
        np.testing.assert_array_equal(labels_from_logits(logits, size, lowres=True, threads=threads)[0], one)
    assert_matches_reference(one, reference_ids(logits, size, lowres=True))


def test_noisy_logits_take_the_reference_path_with_the_same_ids(monkeypatch):
    """An untrained model's logits have boundaries everywhere: both branches give the reference."""
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 30, 24, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    size = (70, 90)
    resized = reference_ids(logits, size, lowres=True)
    assert_matches_reference(labels_from_logits(logits, size, lowres=True)[0], resized)
    monkeypatch.setattr(labels_module, "MAX_BOUNDARY_FRACTION", 1.0)  # force per-pixel resolution
    assert_matches_reference(labels_from_logits(logits, size, lowres=True)[0], resized)


def test_each_resolution_step_is_exercised(monkeypatch):
    """A third class that is second-best on both sides of a two-class boundary and overtakes both
    where they fade: the two-candidate certificate must fail there and the full vectors decide."""
    logits = torch.full((1, 3, 4, 6), -5.0)
    logits[0, 0, :, :3] = 4.0  # class 0 on the left
    logits[0, 1, :, 3:] = 4.0  # class 1 on the right
    logits[0, 2, :, 2:4] = 3.9  # class 2 second-best on both sides of the boundary...
    logits[0, 0, :, 2] = 4.0
    logits[0, 1, :, 3] = 4.0
    logits[0, 0, :, 3] = 0.0  # ...so in between, where 0 and 1 both fade, 2 wins
    logits[0, 1, :, 2] = 0.0
    logits = logits.contiguous(memory_format=torch.channels_last)
    calls = []
    original = labels_module._refine
    monkeypatch.setattr(labels_module, "_refine", lambda *a: calls.append(1) or original(*a))
    size = (8, 24)
    got = labels_from_logits(logits, size, lowres=True)[0]
    resized = reference_ids(logits, size, lowres=True)
    assert calls, "boundary pixels went through the refinement"
    assert (resized.argmax(1) == 2).any(), "the scenario has the third class winning somewhere"
    assert_matches_reference(got, resized)


def test_uniform_logits_need_no_refinement(monkeypatch):
    logits = torch.zeros(1, 5, 6, 8)
    logits[0, 3] = 1.0
    monkeypatch.setattr(labels_module, "_refine", lambda *a: pytest.fail("nothing to refine"))
    got = labels_from_logits(logits, (30, 31), lowres=True)[0]
    assert (got == 3).all()


def test_axis_taps_reproduce_torch_interpolation():
    stages = ((24, True), (37, False))
    taps = axis_taps(10, stages)
    signal = torch.randn(1, 1, 1, 10)
    expected = F.interpolate(F.interpolate(signal, size=(1, 24), mode="bilinear", align_corners=True),
                             size=(1, 37), mode="bilinear", align_corners=False)[0, 0, 0].numpy()
    index = np.minimum(taps.first[:, None] + np.arange(taps.taps), 9)
    got = (taps.weight * signal[0, 0, 0].numpy()[index]).sum(1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(taps.weight.sum(1), 1.0, atol=1e-6)
    expected_stages = (((20, True), (37, False)), ((24, True), (30, False)))
    assert resize_stages((10, 12), (37, 30), lowres=True) == expected_stages


def _dense_taps(n_src, stages):
    """The taps from dense (n_out x n_in) interpolation matrices multiplied out: the former
    implementation, O(n^2) memory, kept here as the oracle."""
    m = np.eye(n_src)
    for n_out, align_corners in stages:
        n_in = m.shape[0]
        signal = torch.eye(n_in, dtype=torch.float32).view(n_in, 1, 1, n_in)
        stage = F.interpolate(signal, size=(1, n_out), mode="bilinear", align_corners=align_corners)
        m = stage[:, 0, 0, :].double().numpy().T @ m  # (n_out, n_in): torch's own weights
    nonzero = m > 1e-12
    first = nonzero.argmax(1)
    last = n_src - 1 - nonzero[:, ::-1].argmax(1)
    return first, last - first + 1, m


@pytest.mark.parametrize(
    ("n_src", "stages"),
    [(10, ((24, True), (37, False))), (37, ((74, True), (20, False))), (5, ((10, True), (480, False))),
     (64, ((64, False),)), (1, ((2, True), (9, False))), (30, ((60, True), (61, False))), (7, ())],
)
def test_axis_taps_equal_the_dense_composition(n_src, stages):
    first, span, m = _dense_taps(n_src, stages)
    taps = axis_taps(n_src, stages)
    np.testing.assert_array_equal(taps.first, first)
    np.testing.assert_array_equal(taps.span, span)
    assert taps.taps == span.max() and taps.weight.shape == (len(first), span.max())
    index = np.minimum(first[:, None] + np.arange(taps.taps), n_src - 1)
    dense = np.where(np.arange(taps.taps) < span[:, None], m[np.arange(len(first))[:, None], index], 0)
    np.testing.assert_allclose(taps.weight, dense, atol=1e-6)


def test_axis_taps_of_a_long_axis_are_linear_in_memory_and_time():
    """An 8192-pixel-wide strip from 4096 logits (x2 head, then the image size): the dense
    composition needed 8192 x 8192 and 8192 x 4096 float64 matrices (768 MB, 275 GFLOP)."""
    import time
    import tracemalloc

    axis_taps.cache_clear()
    tracemalloc.start()
    start = time.perf_counter()
    taps = axis_taps(4096, ((8192, True), (8192, False)))
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert taps.weight.shape[0] == 8192 and taps.taps <= 3
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB"
    assert elapsed < 1.0, elapsed


def test_exact_labels_reject_taps_of_another_geometry():
    rows, cols = axis_taps(8, ((16, True),)), axis_taps(8, ((16, True),))
    with pytest.raises(ValueError, match="logits are 6x8 but the taps were built for 8x8"):
        exact_labels(np.zeros((6, 8, 3), np.float32), rows, cols)
