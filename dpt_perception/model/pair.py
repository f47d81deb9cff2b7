"""`TaskPair`: a depth model and a segmentation model with their OWN encoders, behind the DPT
forward contract, so the PerceptionPipeline, the node and the backends serve both tasks from one call.

The official releases are single-task files with different encoders, so joining them into one
shared-encoder model keeps only one task exact (`checkpoints.compose`). The pair keeps both
exact at the cost of two encoder passes per frame; distilling the pair into one shared encoder
(`training.distill`) removes that cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from .checkpoints.common import CheckpointError
from .checkpoints.compose import composed_config
from .dpt import DPT


def task_of(model: DPT) -> str:
    """'depth', 'segmentation' or 'both' from the model's heads."""
    heads = set(model.config.heads)
    return "both" if heads == {"depth", "segmentation"} else heads.pop()


class TaskPair(nn.Module):
    """forward(pixel_values, heads=None) -> {"depth": ..., "segmentation": ...} exactly as each model
    alone would give; a task nobody asks for skips its model entirely. `forward_features` and
    `heads` give the same parts as a DPT's (the inference pipeline composes them).

    `config` describes the joint outputs (depth semantics and net size of the depth model, classes
    of the segmentation model); it is also the architecture a distilled student takes."""

    encoder_passes = 2  # per frame with both tasks requested (a DPT has 1)

    def __init__(self, depth_model: DPT, segmentation_model: DPT):
        super().__init__()
        problems = []
        if "depth" not in depth_model.config.heads:
            problems.append(f"the depth model has no depth head (heads {depth_model.config.heads})")
        if "segmentation" not in segmentation_model.config.heads:
            problems.append(
                f"the segmentation model has no segmentation head (heads {segmentation_model.config.heads})"
            )
        if problems:
            raise CheckpointError(
                "a depth + segmentation pair needs one model of each task: " + "; ".join(problems)
            )
        d, s = depth_model.config, segmentation_model.config
        if (d.mean, d.std) != (s.mean, s.std):
            raise CheckpointError(
                f"the pair's models expect different input normalisation (depth mean/std {d.mean}/{d.std}, "
                f"segmentation {s.mean}/{s.std}); one preprocessed frame cannot serve both"
            )
        self.depth_model = depth_model
        self.segmentation_model = segmentation_model
        self.config = composed_config(d, s, encoder_from="depth", same_architecture=False)
        # With `measure` set, forward (forward_features: encoder + neck) records each task's model
        # time in `last_ms` (synchronising
        # CUDA, so only for a check frame: the node reports the pair's cost this way).
        self.measure = False
        self.last_ms: dict[str, float] = {}

    def _timed(self, task: str, run):
        if not self.measure:
            return run()
        sync = torch.cuda.synchronize if next(self.parameters()).is_cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        out = run()
        sync()
        self.last_ms[task] = (time.perf_counter() - start) * 1000.0
        return out

    @property
    def heads(self) -> dict[str, nn.Module]:
        """task -> the head that serves it (each from its own model; not registered twice)."""
        return {"depth": self.depth_model.heads["depth"],
                "segmentation": self.segmentation_model.heads["segmentation"]}

    def forward_features(
        self, pixel_values: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """The fused map each requested task's head reads, from that task's own model."""
        models = {"depth": self.depth_model, "segmentation": self.segmentation_model}
        return {
            task: self._timed(task, lambda m=models[task], t=task: m.forward_features(pixel_values, [t])[t])
            for task in self._tasks(heads)
        }

    def forward(
        self, pixel_values: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        wanted = self._tasks(heads)
        models = {"depth": self.depth_model, "segmentation": self.segmentation_model}
        out: dict[str, torch.Tensor] = {}
        for task in wanted:  # each model called as a module: its hooks see the pass
            out.update(self._timed(task, lambda m=models[task], t=task: m(pixel_values, heads=[t])))
        return out

    def _tasks(self, heads: Sequence[str] | None) -> list[str]:
        wanted = list(self.config.heads) if heads is None else list(heads)
        unknown = [h for h in wanted if h not in self.config.heads]
        if unknown:
            raise ValueError(f"heads={wanted} asks for a head this pair lacks; it has {self.config.heads}")
        return [task for task in ("depth", "segmentation") if task in wanted]


def make_pair(first: DPT, second: DPT) -> TaskPair:
    """A TaskPair from two single-task models given in either order; a clear error when they are
    not one depth and one segmentation model."""
    tasks = (task_of(first), task_of(second))
    if sorted(tasks) != ["depth", "segmentation"]:
        raise CheckpointError(
            f"a pair needs one depth and one segmentation checkpoint; got a {tasks[0]} model and a "
            f"{tasks[1]} model (heads {first.config.heads} and {second.config.heads})"
        )
    depth, seg = (first, second) if tasks[0] == "depth" else (second, first)
    return TaskPair(depth, seg)


@torch.no_grad()
def single_task_model(model: DPT, task: str) -> DPT:
    """The part of a two-task `model` that serves `task` alone (its encoder, neck and head), e.g. to
    run one head of a shared checkpoint or to make a teacher of it."""
    if task not in model.config.heads:
        raise ValueError(f"the model has no {task!r} head (heads {model.config.heads})")
    keep_aux = model.config.aux_head and task == "segmentation"
    single = DPT(model.config.replace(heads=[task], aux_head=keep_aux))
    wanted = single.state_dict()
    single.load_state_dict({k: v for k, v in model.state_dict().items() if k in wanted}, strict=True)
    return single.eval()


class EncoderPassCounter:
    """Counts, with forward hooks, the images that go through `model` and through each encoder
    inside it: `per_frame()` is 1.0 for a shared-encoder DPT, 2.0 for a TaskPair asked for both
    tasks (measured, not assumed; engines that bypass the module, e.g. ONNX, are not seen)."""

    def __init__(self, model: nn.Module):
        from .vit import VisionTransformer

        self.totals = (0, 0)  # (frames, encoder images), replaced as one tuple: a reader on another
        self._in_flight = 0  # thread never sees half a forward (encoder images of the running one)
        model.register_forward_hook(self._on_model)
        for module in model.modules():
            if isinstance(module, VisionTransformer):
                module.register_forward_hook(self._on_encoder)

    def _on_model(self, _module, inputs, _output) -> None:
        frames, encoder_images = self.totals
        self.totals = (frames + int(inputs[0].shape[0]), encoder_images + self._in_flight)
        self._in_flight = 0

    def _on_encoder(self, _module, inputs, _output) -> None:
        self._in_flight += int(inputs[0].shape[0])

    def per_frame(self) -> float | None:
        frames, encoder_images = self.totals
        return encoder_images / frames if frames else None
