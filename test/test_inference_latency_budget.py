"""Latency budget controller (inference/latency_budget.py) against a fake timing model in which
the forward's time is proportional to the pixels (plus a fixed pre/post-processing part)."""
import random

import pytest

from dpt_perception.inference.latency_budget import HEADROOM, LatencyBudget, size_ladder

MODEL = (480, 640)


class FakeModel:
    """forward = ms_per_mpix * pixels / 1e6 (+- noise), total = forward + fixed."""

    def __init__(self, ms_per_mpix=1000.0, fixed=5.0, noise=0.0, seed=0):
        self.ms_per_mpix, self.fixed, self.noise = ms_per_mpix, fixed, noise
        self.rng = random.Random(seed)

    def timings(self, size):
        forward = self.ms_per_mpix * size[0] * size[1] / 1e6 * (1 + self.rng.uniform(-self.noise, self.noise))
        return {"forward": forward, "total": forward + self.fixed}

    def exact_total(self, size):
        return self.ms_per_mpix * size[0] * size[1] / 1e6 + self.fixed


def run(budget: LatencyBudget, model: FakeModel, frames: int, sizes: list | None = None):
    """Feed `frames` inferences at the controller's size; returns the sizes used per frame."""
    sizes = [] if sizes is None else sizes
    current = budget.size
    for _ in range(frames):
        sizes.append(current)
        new = budget.observe(current, model.timings(current))
        if new is not None:
            current = new
    return sizes


def test_ladder_keeps_aspect_in_multiples_of_32():
    ladder = size_ladder(MODEL)
    assert ladder[0] == MODEL and ladder[-1] == (32, 32)
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in ladder)
    assert all(abs(w / h - 640 / 480) < 0.35 for h, w in ladder if h >= 128)
    areas = [h * w for h, w in ladder]
    assert areas == sorted(areas, reverse=True) and len(set(ladder)) == len(ladder)
    assert size_ladder((384, 384))[1] == (352, 352)


def test_settles_within_10_frames_on_the_largest_size_that_fits():
    model = FakeModel()  # 480x640: 312 ms
    budget = LatencyBudget(MODEL, budget_ms=100.0)
    sizes = run(budget, model, 10)
    final = sizes[-1]
    assert model.exact_total(final) <= 100.0
    assert sizes[-3:] == [final] * 3, sizes  # settled
    larger = [s for s in size_ladder(MODEL) if s[0] * s[1] > final[0] * final[1]]
    assert model.exact_total(larger[-1]) > HEADROOM * 100.0  # the next size up would not fit (with headroom)
    assert run(budget, model, 40)[-40:] == [final] * 40  # and stays there
    assert "100 ms: net_size " + "x".join(map(str, final)) in budget.state()


def test_noise_does_not_make_it_oscillate():
    model = FakeModel(noise=0.08, seed=1)
    budget = LatencyBudget(MODEL, budget_ms=150.0)
    sizes = run(budget, model, 100)
    assert len(set(sizes[10:])) == 1, sorted(set(sizes[10:]))
    assert model.exact_total(sizes[-1]) <= 150.0


def test_drift_rechecks_in_both_directions():
    model = FakeModel()
    budget = LatencyBudget(MODEL, budget_ms=120.0)
    settled = run(budget, model, 10)[-1]
    model.ms_per_mpix *= 1.6  # the machine got busier: over budget, shrinks
    smaller = run(budget, model, 10)[-1]
    assert smaller[0] < settled[0] and model.exact_total(smaller) <= 120.0
    model.ms_per_mpix /= 1.6  # and back: grows again to the first size
    assert run(budget, model, 10)[-1] == settled
    model.ms_per_mpix *= 1.1  # a 10 % drift that still fits is left alone
    assert run(budget, model, 10) == [settled] * 10


def test_budget_change_applies_and_larger_than_the_model_is_never_chosen():
    model = FakeModel()
    budget = LatencyBudget(MODEL, budget_ms=50.0)
    small = run(budget, model, 10)[-1]
    budget.set_budget(10_000.0)
    assert run(budget, model, 10)[-1] == MODEL
    budget.set_budget(0.0)  # off: nothing changes any more, whatever the time
    model.ms_per_mpix *= 100
    assert run(budget, model, 10) == [MODEL] * 10
    assert budget.state() == "off"
    assert small != MODEL


def test_explicit_net_size_wins_and_the_budget_only_reports():
    model = FakeModel()
    budget = LatencyBudget(MODEL, budget_ms=50.0, explicit=(480, 640))
    assert run(budget, model, 10) == [(480, 640)] * 10
    assert "explicit net_size wins" in budget.state() and "OVER BUDGET" in budget.state()
    assert budget.set_explicit(None) == MODEL  # back to choosing, from the model's own size
    assert model.exact_total(run(budget, model, 10)[-1]) <= 50.0


def test_follows_a_size_changed_elsewhere_and_ignores_untimed_frames():
    model = FakeModel()
    budget = LatencyBudget(MODEL, budget_ms=1000.0)
    assert budget.observe(MODEL, {}) is None  # a frame without timings (no head ran)
    assert budget.observe((240, 320), model.timings((240, 320))) is None  # e.g. out-of-memory fallback
    assert budget.size == (240, 320)
    assert run(budget, model, 6)[-1] == MODEL  # plenty of budget: back up to the model's size


@pytest.mark.parametrize("budget_ms", [1.0, 6.0])
def test_impossible_budget_ends_at_the_smallest_size(budget_ms):
    budget = LatencyBudget(MODEL, budget_ms=budget_ms)
    assert run(budget, FakeModel(), 10)[-1] == (32, 32)
