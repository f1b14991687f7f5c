"""Timers: how one repetition of a prepared call is measured.

  cold   CUDA events around each repetition; the L2 cache is flushed (a buffer larger than L2 is
         overwritten) before it, outside the events.
  warm   CUDA events around each repetition, no flush (data may still sit in L2).
  graph  the call is captured once in a CUDA graph and the graph is replayed between the events;
         the L2 flush happens before each replay, outside the events.
  host   wall clock around call + device synchronisation (the only timer in the interpreter, and
         the one for end-to-end work where launch overhead is part of what is measured).

Usage (the runner interleaves providers, so a timer times one repetition at a time, and enqueues
them in chunks of rounds between synchronisations):

    timer = make_timer("cold", hold=True)
    fn = timer.setup(fn)            # graph capture for "graph"; identity otherwise
    timer.hold_for(seconds)         # once per chunk: GPU sleeps while the host enqueues it
    timer.begin_round()             # once per round (warm without hold: a short device sleep)
    handle = timer.record(fn)       # enqueue one timed repetition (host: runs and times it)
    ms = timer.collect([handle])    # synchronise and read the elapsed milliseconds

Device timers enqueue without synchronising: an event pair times the GPU from the start event to
the end event, so any gap in which the GPU waits for the host's next launch inside that pair is
counted as kernel time. For a kernel of a few µs whose Python launch costs tens of µs that gap
dominates (medians 5-10x too high, IQR/median of hundreds of %) unless the GPU has queued work
to run while the host catches up.

Hold (``hold=True``, the kernels suite; nvbench's "blocking kernel" idea): before enqueueing a
chunk the measurement loop calls ``hold_for(seconds)``, which enqueues ``torch.cuda._sleep`` on
the current stream for that long, so the GPU sleeps while the host enqueues the whole chunk and
then runs its repetitions back to back, each start event directly followed by its already queued
work. The sleep sits before the chunk, outside every start/end pair: it is never part of a
sample. Seconds become sleep cycles through a one-time calibration per process
(`sleep_cycles_per_ms`: `torch.cuda._sleep` timed with CUDA events), and a hold is capped at
`HOLD_MAX_S`. How long to hold is the loop's estimate (`vitbench.bench.measure`): 1.5x the host's
wall time to enqueue the previous chunk (scaled to the next chunk's rounds), and for the first
chunk 1.5x the host time of the providers' calls measured during warm-up. The CUDA launch queue
is finite (about a thousand entries): the loop keeps held chunks to `HOLD_MAX_RECORDS`
repetitions so the host normally does not block on it; when it does (a provider with many
launches), the GPU is busy anyway: samples stay right, the measured enqueue time then includes the
wait, and the hold grows toward its cap (idle device time, not a wrong sample).
With hold, `begin_round` adds nothing (the chunk's hold covers its rounds).

Without hold (the model suite: end-to-end forwards, where the host's launch time is part of what
a user waits for when a provider is host-bound) nothing is held: the flush (cold, graph) or a
~0.1 ms device sleep per round (warm) queued in front of each repetition is all the head start
the host gets, as before. The host timer ignores hold.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.errors import VitbenchError

TIMERS = ("cold", "warm", "graph", "host")
DEVICE_TIMERS = ("cold", "warm", "graph")

_FLUSH_MIN_BYTES = 256 * 2**20  # at least 256 MiB, and at least 4x the L2 size

HOLD_MAX_S = 0.05  # longest single hold (device sleep before a chunk)
HOLD_MIN_S = 1e-4  # shortest: about what begin_round's warm sleep gave per round
HOLD_MAX_RECORDS = 120  # repetitions per held chunk: stays well inside the CUDA launch queue

_CALIBRATION_CYCLES = 1_000_000  # ~0.5-1 ms of torch.cuda._sleep on current GPUs
_cycles_per_ms: float | None = None  # torch.cuda._sleep cycles per millisecond, once per process


def _sync() -> None:
    if HAS_CUDA and not INTERPRETER:
        torch.cuda.synchronize()


def sleep_cycles_per_ms() -> float:
    """`torch.cuda._sleep` cycles per millisecond on this GPU, measured once per process.

    A first sleep loads the kernel and lets clocks settle; then the shortest of three timed
    sleeps counts (the most cycles per ms, so a later hold errs on the long side)."""
    global _cycles_per_ms
    if _cycles_per_ms is None:
        torch.cuda._sleep(2 * _CALIBRATION_CYCLES)
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(3):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            torch.cuda._sleep(_CALIBRATION_CYCLES)
            end.record()
            end.synchronize()
            best = min(best, float(start.elapsed_time(end)))
        _cycles_per_ms = _CALIBRATION_CYCLES / max(best, 1e-3)
    return _cycles_per_ms


class Timer:
    """Base class; see the module docstring for the protocol."""

    name = "base"
    hold = False  # device timers: sleep the GPU while the host enqueues a chunk (see above)

    def setup(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        return fn

    def hold_for(self, seconds: float) -> None:
        """Before a chunk: keep the GPU busy for `seconds` (capped) while the host enqueues it.
        A no-op unless the timer holds (the host timer never does)."""

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

    def __init__(self, flush: bool, hold: bool = False):
        self.name = "cold" if flush else "warm"
        self.flush = flush
        self.hold = bool(hold)
        self._buf: torch.Tensor | None = None
        if flush:
            l2 = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
            nbytes = max(_FLUSH_MIN_BYTES, 4 * l2)
            self._buf = torch.empty(nbytes, dtype=torch.int8, device="cuda")
            self._flush_s = nbytes / 1.0e12  # rough: ~1 TB/s write, only used to plan reps

    def hold_for(self, seconds: float) -> None:
        if not self.hold:
            return
        seconds = min(max(float(seconds), 0.0), HOLD_MAX_S)
        cycles = int(seconds * 1e3 * sleep_cycles_per_ms())
        if cycles > 0:
            torch.cuda._sleep(cycles)  # on the current stream, before the chunk's first event

    def begin_round(self) -> None:
        if not self.flush and not self.hold:
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

    def __init__(self, hold: bool = False) -> None:
        super().__init__(flush=True, hold=hold)
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


def make_timer(name: str, hold: bool = False) -> Timer:
    """A timer by name; device timers need a CUDA GPU (VitbenchError otherwise). `hold`: device
    timers sleep the GPU while the host enqueues each chunk (module docstring); host ignores it."""
    if name not in TIMERS:
        raise VitbenchError(f"unknown timer {name!r}; choose from {', '.join(TIMERS)}")
    if name == "host":
        return HostTimer()
    if not HAS_CUDA or INTERPRETER:
        raise VitbenchError(
            f"timer {name!r} needs a CUDA GPU; without one (Triton interpreter) use --timer host"
        )
    if name == "graph":
        return GraphTimer(hold=hold)
    return EventTimer(flush=name == "cold", hold=hold)
