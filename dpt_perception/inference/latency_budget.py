"""Latency budget (`max_latency_ms`): the largest network size whose measured time fits.

`LatencyBudget` watches the PerceptionPipeline's timings of every inference ("forward" and "total", in ms)
and picks the network size (`net_size` target) from a ladder of sizes: the model's own size, then
heights 32 smaller at a time with the width keeping the model's aspect (multiples of 32). The
model's own (trained) size is the top of the ladder.

Time model: total = fixed + forward, where only the forward scales with the pixels; the time a
size S would take is estimated from the current size C as
``fixed + forward * pixels(S) / pixels(C)`` (both terms as exponential moving averages, weight
`EMA` for a new frame). Rules, with hysteresis so the size does not oscillate:

- a decision needs `SETTLE_FRAMES` measured frames at the current size; the first frame after a
  change is not counted (allocator / cudnn / compile warm-up);
- over budget (EMA total > budget): the largest size estimated at <= `HEADROOM` x budget (the
  smallest of the ladder if none);
- within budget: grow to the largest size estimated at <= `HEADROOM` x budget, if larger;
- once settled, sizes are re-checked only when the EMA drifts more than `DRIFT` (20 %) from the
  time it settled at, or goes over budget; the check then measures `SETTLE_FRAMES` fresh frames
  at the current size first (the EMA lags behind a change) and decides on those.
An explicit net_size wins: the budget then only reports (`state()`), it never changes the size.
"""

from __future__ import annotations

EMA = 0.3
SETTLE_FRAMES = 2
HEADROOM = 0.9
DRIFT = 0.2
MULTIPLE = 32


def size_ladder(model_size: tuple[int, int], multiple: int = MULTIPLE) -> list[tuple[int, int]]:
    """Candidate sizes, largest first: heights model_h, model_h - 32, ... 32, widths rounded to the
    model's aspect (multiples of 32, at least 32), duplicates dropped."""
    h0, w0 = model_size
    ladder: list[tuple[int, int]] = []
    h = h0 - h0 % multiple or multiple
    while h >= multiple:
        w = max(multiple, int(round(h * w0 / h0 / multiple)) * multiple)
        if (h, w) not in ladder:
            ladder.append((h, w))
        h -= multiple
    return ladder


def _pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


class LatencyBudget:
    """Chooses the network size for a latency budget in ms (0 = off); see the module docstring."""

    def __init__(self, model_size: tuple[int, int], budget_ms: float = 0.0,
                 explicit: tuple[int, int] | None = None):
        self.model_size = tuple(model_size)
        self.ladder = size_ladder(self.model_size)
        self.budget_ms = float(budget_ms)
        self.explicit = explicit
        self.size = tuple(explicit) if explicit else self.model_size
        self._reset()

    def _reset(self) -> None:
        self.forward_ms: float | None = None
        self.fixed_ms: float | None = None
        self.frames = 0  # measured frames at self.size
        self.skip = 1  # frames not to count (warm-up after a size change)
        self.settled_ms: float | None = None  # EMA total when the size was last confirmed

    # ---- settings ----------------------------------------------------------------------------
    def set_budget(self, budget_ms: float) -> None:
        self.budget_ms = float(budget_ms)
        self.settled_ms = None  # re-check at once with the measurements so far

    def set_explicit(self, size: tuple[int, int] | None) -> tuple[int, int]:
        """An explicit net_size (None = back to choosing, from the model's own size); returns the
        size to run now."""
        self.explicit = tuple(size) if size else None
        self.size = self.explicit or self.model_size
        self._reset()
        return self.size

    # ---- measurements ------------------------------------------------------------------------
    @property
    def total_ms(self) -> float | None:
        return None if self.forward_ms is None else self.forward_ms + self.fixed_ms

    def estimate(self, size: tuple[int, int]) -> float:
        """Estimated total ms at `size` from the measurements at the current size."""
        return self.fixed_ms + self.forward_ms * _pixels(size) / _pixels(self.size)

    def observe(self, current: tuple[int, int], timings: dict[str, float]) -> tuple[int, int] | None:
        """Record one inference at network size `current` (its PerceptionPipeline timings); returns a new
        size to use, or None to keep the current one."""
        if "forward" not in timings or "total" not in timings:
            return None
        current = tuple(current)
        if current != self.size:  # changed elsewhere (out-of-memory fallback, parameter): follow it
            self.size = current
            self._reset()
        if self.skip:
            self.skip -= 1
            return None
        forward = float(timings["forward"])
        fixed = max(0.0, float(timings["total"]) - forward)
        if self.forward_ms is None:
            self.forward_ms, self.fixed_ms = forward, fixed
        else:
            self.forward_ms += EMA * (forward - self.forward_ms)
            self.fixed_ms += EMA * (fixed - self.fixed_ms)
        self.frames += 1
        if self.budget_ms <= 0 or self.explicit is not None or self.frames < SETTLE_FRAMES:
            return None
        total = self.total_ms
        if self.settled_ms is not None:
            if total <= self.budget_ms and abs(total / self.settled_ms - 1) <= DRIFT:
                return None
            # Drifted or over budget: the EMA lags, so measure afresh at this size, then decide.
            self._reset()
            self.skip = 0
            return None
        fitting = [s for s in self.ladder if self.estimate(s) <= HEADROOM * self.budget_ms]
        target = fitting[0] if fitting else self.ladder[-1]
        over = total > self.budget_ms
        if target == self.size or (not over and _pixels(target) <= _pixels(self.size)):
            self.settled_ms = total
            return None
        self.size = target
        self._reset()
        return target

    def state(self) -> str:
        """One line for /diagnostics."""
        if self.budget_ms <= 0:
            return "off"
        size = "x".join(map(str, self.size))
        measured = "not measured yet" if self.total_ms is None else f"{self.total_ms:.1f} ms (EMA)"
        text = f"{self.budget_ms:g} ms: net_size {size}, measured {measured}"
        if self.explicit is not None:
            over = self.total_ms is not None and self.total_ms > self.budget_ms
            text += "; explicit net_size wins (reporting only" + (", OVER BUDGET)" if over else ")")
        return text
