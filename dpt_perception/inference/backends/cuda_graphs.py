"""CUDA graph capture of a fixed-shape forward, one graph per input shape.

A CUDA graph replays the recorded kernel launches in one call, removing the per-kernel CPU
launch cost that dominates small batches on fast GPUs. A graph is only valid for the exact
input shape, dtype and device it was captured with, so graphs are cached per shape (a
resolution change captures a new graph; least recently used ones are dropped beyond
`max_shapes`). All graphs share one memory pool, so idle graphs cost little extra memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dpt_perception.caches import LRUCache


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: dict[str, torch.Tensor]


class CUDAGraphRunner:
    """Wraps `fn(x) -> dict of tensors` (run under whatever contexts `fn` sets itself).

    Args:
        fn: the forward to capture; it must not synchronise or move data to the host.
        max_shapes: graphs kept at once (least recently used beyond that are released).
        warmup_iters: eager runs on a side stream before capture (cuDNN/cuBLAS pick algorithms
            and allocate workspaces there, which must not happen during capture).
        clone_outputs: return copies; without it the returned tensors are the graph's static
            buffers and are overwritten by the next call with the same shape.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
        max_shapes: int = 4,
        warmup_iters: int = 3,
        clone_outputs: bool = True,
    ):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device; none is available")
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")
        self.fn = fn
        self.max_shapes = max_shapes
        self.warmup_iters = warmup_iters
        self.clone_outputs = clone_outputs
        self._graphs = LRUCache("cuda_graphs", max_shapes)  # (shape, dtype, device, layout) -> graph
        self._pool = torch.cuda.graph_pool_handle()
        self.captures = 0  # number of captures so far (tests and logs use it)

    @property
    def cached_shapes(self) -> list[tuple[int, ...]]:
        return [key[0] for key in self._graphs.keys()]

    def _capture(self, x: torch.Tensor) -> _Captured:
        if x.device.type != "cuda":
            raise ValueError(f"CUDA graph input must be on a CUDA device, got {x.device}")
        static_input = x.detach().clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self.fn(static_input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_output = self.fn(static_input)
        self.captures += 1
        return _Captured(graph, static_input, static_output)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (tuple(x.shape), x.dtype, x.device, x.is_contiguous(memory_format=torch.channels_last))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(x)
            self._graphs.put(key, entry)
        else:
            entry.static_input.copy_(x)
        entry.graph.replay()
        if self.clone_outputs:
            return {k: v.clone() for k, v in entry.static_output.items()}
        return dict(entry.static_output)

    def clear(self) -> None:
        self._graphs.clear()
