"""`load_dpt_model(weights, preset)`: the model the node, distillation and tools serve for a
`weights` value (one checkpoint, or a [depth, segmentation] pair), and `describe_model`, the line
that says how many encoders it runs per frame (ROS-free)."""

from __future__ import annotations

from collections.abc import Sequence


def load_dpt_model(weights: str | Sequence[str], preset: str):
    """The model for `weights`: one checkpoint, or a [depth, segmentation] pair (either order) as a
    `TaskPair` (two encoders per frame) unless a distilled one-encoder checkpoint for that pair is
    cached (`inference.weights.distilled_path`), which is then loaded instead.

    Each source is a checkpoint path (our format, HF directory, official file) or an official
    checkpoint name (file stem or alias, downloaded once into the cache and hash-checked by
    inference.weights). `preset` names the architecture when a single file does not say it."""
    from dpt_perception.inference.weights import distilled_path
    from dpt_perception.model.checkpoints import load_model
    from dpt_perception.model.pair import make_pair

    sources = [weights] if isinstance(weights, str) else list(weights)
    if len(sources) == 1:
        return _load_one(sources[0], preset)
    if len(sources) != 2:
        raise ValueError(f"weights takes one checkpoint or a [depth, segmentation] pair, got {sources}")
    if preset:
        raise ValueError(
            f"model {preset!r} names one architecture, but weights is a pair {sources}: each checkpoint "
            "of a pair must identify itself (our format, HF, or an official file under its release name)"
        )
    shared = distilled_path(sources)
    if shared is not None:
        return load_model(shared)
    from dpt_perception.inference.weights import WeightsUnavailableError

    models, missing = [], []
    for source in sources:  # every missing file is named at once, not one per start
        try:
            models.append(_load_one(source, ""))
        except WeightsUnavailableError as exc:
            missing.append(str(exc))
    if missing:
        raise WeightsUnavailableError("\n".join(missing))
    return make_pair(*models)


def _load_one(weights: str, preset: str):
    from dpt_perception.model.checkpoints import load_model

    return load_model(weights, preset=preset or None, download=True)


def format_passes(value: float | None) -> str:
    """`EncoderPassCounter.per_frame()` for /diagnostics."""
    return "not measured (engine bypasses the PyTorch modules)" if value is None else f"{value:.2f}"


def describe_model(model, weights: Sequence[str], net_h: int, net_w: int) -> str:
    """One line for the start-up log and /diagnostics: how many encoders run per frame, and for a
    pair what each costs (measured on the start-up check frame) and how to get to one encoder."""
    from dpt_perception.inference.weights import distilled_target
    from dpt_perception.model.pair import TaskPair

    if not isinstance(model, TaskPair):
        return f"one encoder ({model.config.variant}) for heads {', '.join(model.config.heads)}"
    cost = model.last_ms
    return (
        f"depth + segmentation pair: TWO encoders per frame (depth {model.depth_model.config.variant} "
        f"{cost.get('depth', float('nan')):.0f} ms + segmentation {model.segmentation_model.config.variant} "
        f"{cost.get('segmentation', float('nan')):.0f} ms at {net_h}x{net_w} on the start-up frame); "
        f"distil it into one encoder: ros2 run dpt_perception train --config config/distill_hybrid.yaml "
        f"(writes {distilled_target(weights)}, used automatically)"
    )
