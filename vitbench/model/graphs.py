"""CUDA graphs for the Triton ViT: one graph per input shape, captured once, replayed.

Each graph owns a static input buffer and the static outputs its captured forward wrote; a call
copies the new pixels into the static input (skipped when the caller passes that very buffer),
replays, and returns the static outputs (overwritten by the next replay of the same graph;
callers that keep results must clone them). Triton autotuning and JIT happen in the warm-up
calls on a side stream, before capture. GPU only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.errors import VitbenchError

GRAPHS_AVAILABLE = HAS_CUDA and not INTERPRETER


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_in: torch.Tensor
    static_out: Any  # whatever fn returned: a tensor or a tuple of tensors / None


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


class GraphRunner:
    """Replays `fn(x)` from a CUDA graph per (shape, dtype, device) of x."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], *, warmup: int = 2):
        if not GRAPHS_AVAILABLE:
            raise VitbenchError("CUDA graphs need a CUDA GPU (here Triton runs in the interpreter)")
        self.fn, self.warmup = fn, warmup
        self._graphs: dict[tuple, _Captured] = {}

    @staticmethod
    def _key(x: torch.Tensor) -> tuple:
        return tuple(x.shape), x.dtype, x.device

    def capture(self, x: torch.Tensor, *, adopt: bool = False) -> _Captured:
        """Capture the graph for x's shape; `adopt=True` uses x itself as the static input."""
        if x.device.type != "cuda":
            raise VitbenchError(f"pixel_values are on {x.device}; CUDA graphs need a CUDA tensor")
        static_in = x if adopt else x.detach().clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: JIT compile + autotune, outside capture
            for _ in range(max(1, self.warmup)):
                self.fn(static_in)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_in)
        # Capture records kernels without running them: poison the outputs so a replay that fails
        # to write an element shows NaN instead of a stale value.
        # (inference tensors, e.g. from a forward under torch.inference_mode, only take in-place
        # writes inside inference mode.)
        with torch.inference_mode():
            for t in _tensors(static_out):
                if t.is_floating_point():
                    t.fill_(float("nan"))
        captured = _Captured(graph, static_in, static_out)
        self._graphs[self._key(x)] = captured
        return captured

    def __call__(self, x: torch.Tensor) -> Any:
        g = self._graphs.get(self._key(x)) or self.capture(x)
        if x.data_ptr() != g.static_in.data_ptr():
            # inside inference mode: the static input is an inference tensor when the graph was
            # captured under torch.inference_mode, and only takes in-place writes there
            with torch.inference_mode():
                g.static_in.copy_(x)
        g.graph.replay()
        return g.static_out

    def shapes(self) -> list[tuple]:
        return [k[0] for k in self._graphs]

    def reset(self) -> None:
        """Drop every graph (and its memory)."""
        self._graphs.clear()
