"""Timers: how one repetition of a prepared call is measured.

  cold   CUDA events around each repetition; the L2 cache is flushed (a buffer larger than L2 is
         overwritten) before it, outside the events.
  warm   CUDA events around each repetition, no flush (data may still sit in L2).
  graph  the call is captured once in a CUDA graph and the graph is replayed between the events;
         the L2 flush happens before each replay, outside the events.
  host   wall clock around call + device synchronisation (the only timer in the interpreter, and
         the one for end-to-end work where launch overhead is part of what is measured).

Usage (the runner interleaves providers, so a timer times one repetition at a time):

    timer = make_timer("cold")
    fn = timer.setup(fn)            # graph capture for "graph"; identity otherwise
    timer.begin_round()             # keeps the GPU busy while the host enqueues the round
    handle = timer.record(fn)       # enqueue one timed repetition (host: runs and times it)
    ms = timer.collect([handle])    # synchronise and read the elapsed milliseconds

Device timers enqueue without synchronising, so the GPU never waits on the host between the
start event and the work: the flush (cold, graph) or a short device sleep (warm) queued in front
of each round gives the host time to run ahead.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.errors import VitbenchError

TIMERS = ("cold", "warm", "graph", "host")
DEVICE_TIMERS = ("cold", "warm", "graph")

_FLUSH_MIN_BYTES = 256 * 2**20  # at least 256 MiB, and at least 4x the L2 size


def _sync() -> None:
    if HAS_CUDA and not INTERPRETER:
        torch.cuda.synchronize()


class Timer:
    """Base class; see the module docstring for the protocol."""

    name = "base"

    def setup(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        return fn

    def begin_round(self) -> None:
        pass

    def record(self, fn: Callable[[], Any]) -> Any:
        raise NotImplementedError

    def collect(self, handles: list[Any]) -> list[float]:
        raise NotImplementedError

    def per_rep_overhead_s(self) -> float:
        """Wall time one repetition adds besides the call itself (e.g. the flush), for planning."""
        return 0.0

    def release(self) -> None:
        """Drop per-case state (captured graphs); the runner calls it after each case."""


class HostTimer(Timer):
    """perf_counter around call + synchronize; record() returns the milliseconds directly."""

    name = "host"

    def record(self, fn: Callable[[], Any]) -> float:
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        return (time.perf_counter() - t0) * 1e3

    def collect(self, handles: list[float]) -> list[float]:
        return [float(h) for h in handles]


class EventTimer(Timer):
    """CUDA events around each repetition; optional L2 flush before it (outside the events)."""

    def __init__(self, flush: bool):
        self.name = "cold" if flush else "warm"
        self.flush = flush
        self._buf: torch.Tensor | None = None
        if flush:
            l2 = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
            nbytes = max(_FLUSH_MIN_BYTES, 4 * l2)
            self._buf = torch.empty(nbytes, dtype=torch.int8, device="cuda")
            self._flush_s = nbytes / 1.0e12  # rough: ~1 TB/s write, only used to plan reps

    def begin_round(self) -> None:
        if not self.flush:
            # ~0.1 ms of device sleep queued first, so the host enqueues the round while it runs.
            torch.cuda._sleep(200_000)

    def record(self, fn: Callable[[], Any]) -> tuple[torch.cuda.Event, torch.cuda.Event]:
        if self._buf is not None:
            self._buf.zero_()  # overwrite > L2: nothing of the inputs stays cached
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        return start, end

    def collect(self, handles: list[tuple[torch.cuda.Event, torch.cuda.Event]]) -> list[float]:
        if handles:
            handles[-1][1].synchronize()
        torch.cuda.synchronize()
        return [float(s.elapsed_time(e)) for s, e in handles]

    def per_rep_overhead_s(self) -> float:
        return self._flush_s if self.flush else 0.0


class GraphTimer(EventTimer):
    """The call captured once in a CUDA graph and replayed; flush before each replay, outside."""

    def __init__(self) -> None:
        super().__init__(flush=True)
        self.name = "graph"
        self._graphs: list[torch.cuda.CUDAGraph] = []  # keep graphs (and their memory) alive

    def setup(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        # Warm up on a side stream first (required before capture), then capture one call.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        torch.cuda.synchronize()
        self._graphs.append(graph)
        return graph.replay

    def release(self) -> None:
        self._graphs.clear()


def make_timer(name: str) -> Timer:
    """A timer by name; device timers need a CUDA GPU (VitbenchError otherwise)."""
    if name not in TIMERS:
        raise VitbenchError(f"unknown timer {name!r}; choose from {', '.join(TIMERS)}")
    if name == "host":
        return HostTimer()
    if not HAS_CUDA or INTERPRETER:
        raise VitbenchError(
            f"timer {name!r} needs a CUDA GPU; without one (Triton interpreter) use --timer host"
        )
    if name == "graph":
        return GraphTimer()
    return EventTimer(flush=name == "cold")
