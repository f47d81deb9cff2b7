"""`Engine`: the common face of every backend.

An engine is called like the model: ``engine(pixel_values) -> {"depth": (B,H,W), "segmentation":
(B,C,H,W)}`` with float32 outputs on the engine's device, whatever precision or runtime runs
inside. It also answers the few module methods the `PerceptionPipeline` uses (`config`, `eval()`, `to()`,
`forward(x, heads=...)`), so an engine can be handed to `PerceptionPipeline(engine, precision="fp32")` in
place of a `DPT` (the engine applies its own precision; the PerceptionPipeline must not add autocast).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .precision import check_precision

OUTPUT_NAMES = ("depth", "segmentation")


class Engine:
    """Base class: subclasses implement `_run(pixel_values) -> dict` (outputs of all heads)."""

    #: short backend name used in benchmarks and error messages
    name = "engine"

    def __init__(self, config, device: torch.device, precision: str, mode: str = "autocast"):
        self.config = config
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = check_precision(precision, self.device, mode)
        self.heads = tuple(h for h in OUTPUT_NAMES if h in config.heads)
        self.training = False

    # ---- the model-like interface ----------------------------------------------------------
    def __call__(
        self, pixel_values: torch.Tensor, heads: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        return self.forward(pixel_values, heads=heads)

    def forward(
        self, pixel_values: torch.Tensor, heads: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the network; `heads` limits the returned outputs (all enabled heads by default)."""
        self.check_input(pixel_values)
        out = self._run(pixel_values)
        wanted = self.heads if heads is None else tuple(heads)
        missing = [h for h in wanted if h not in out]
        if missing:
            raise ValueError(f"{self.name} engine has no output {missing}; this model provides {list(out)}")
        return {h: out[h].float() for h in wanted}

    def _run(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"pixel_values must have shape (B, 3, H, W), got {tuple(x.shape)}")
        if x.device.type != self.device.type:
            raise ValueError(
                f"pixel_values are on {x.device} but the {self.name} engine runs on {self.device}"
            )

    def eval(self) -> Engine:
        return self

    def to(self, *args, **kwargs) -> Engine:
        """Accepts only the engine's own device (engines are built for one device); a memory
        format request is ignored because each engine picks its own layout."""
        device, dtype, _non_blocking, _memory_format = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and torch.device(device).type != self.device.type:
            raise ValueError(
                f"the {self.name} engine was built for {self.device}; it cannot move to {device}. "
                "Build a new engine for that device instead."
            )
        if dtype is not None:
            raise ValueError(
                f"the {self.name} engine's numeric type is set by its precision "
                f"({self.precision}), not by .to({dtype})"
            )
        return self

    def describe(self) -> str:
        return f"{self.name}/{self.precision} on {self.device}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
