"""One case, measured: prepare + correctness gate + warm-up per provider, then interleaved timing.

Used by `vitbench.bench.runner.run_suite`; see its docstring for the whole flow.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.bench.case import Case, Provider, Repeats, torch_dtype
from vitbench.bench.stats import Stats, summarize
from vitbench.bench.timers import HOLD_MAX_RECORDS, HOLD_MAX_S, HOLD_MIN_S, Timer
from vitbench.numerics import rel_err

_ON_GPU = HAS_CUDA and not INTERPRETER


@dataclass
class Slot:
    """One provider's state within a case."""

    provider: Provider
    fn: Callable[[], Any] | None = None
    est_s: float = 0.0
    host_s: float = 0.0  # host time of one call alone (enqueue, no synchronisation), warm-up mean
    compile_s: float | None = None
    err: float | None = None
    gate_ok: bool = False
    error: str | None = None
    samples: list[float] = field(default_factory=list)
    stats: Stats | None = None


def _sync() -> None:
    if _ON_GPU:
        torch.cuda.synchronize()


def error_text(exc: BaseException) -> str:
    """One line for the CSV: exception type + first line of its message (OOM said plainly)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    oom = isinstance(exc, torch.cuda.OutOfMemoryError)
    kind = "CUDA out of memory" if oom else type(exc).__name__
    return f"{kind}: {first}"[:300]


@contextlib.contextmanager
def precision_mode(precision: str) -> Iterator[None]:
    """TF32 on for matmuls and convolutions only when the row says "tf32"."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    on = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _tensors(item)]
    raise TypeError(f"expected a tensor or a tuple of tensors, got {type(x).__name__}")


def max_rel_err(out: Any, ref: Any) -> float:
    """Largest ||out-ref||/||ref|| over matching tensors (NaN/inf in out -> inf)."""
    outs, refs = _tensors(out), _tensors(ref)
    if len(outs) != len(refs):
        raise ValueError(f"provider returned {len(outs)} tensors, reference has {len(refs)}")
    return max(_rel_err(o, r) for o, r in zip(outs, refs))


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """`numerics.rel_err`, computed on the GPU when both live there (no 1 GB host copies)."""
    if out.device.type != "cuda" or ref.device != out.device:
        return rel_err(out, ref)
    if out.shape != ref.shape:
        raise ValueError(f"shape mismatch: out {tuple(out.shape)} vs ref {tuple(ref.shape)}")
    o, r = out.detach().double(), ref.detach().double()
    if not bool(torch.isfinite(o).all()):
        return math.inf
    den = torch.linalg.vector_norm(r).item()
    num = torch.linalg.vector_norm(o - r).item()
    return num / den if den > 0 else num


# Per-element check: ||out-ref|| / ||ref|| <= tol lets one element be off by up to
# tol * ||ref|| ~ tol * sqrt(N) * rms(ref) -- for a 1M-element output 1000x the tolerance, so a
# whole unwritten row (zeros, stale memory) hides inside the norm. Honest rounding puts each
# element within about tol * |ref_i| <= tol * max|ref|; we allow ELEM_FACTOR times that, capped
# at ELEM_CAP * max|ref| (for loose limits such as the model suite's 1.5x HF's error). An element
# left unwritten is off by ~|ref_i|, comparable to max|ref| for all but tiny entries: it fails.
ELEM_FACTOR = 10.0
ELEM_CAP = 0.25


def elem_limit(tol: float) -> float:
    """Largest allowed max|out-ref| / max|ref| for a row whose norm limit is `tol`."""
    return min(ELEM_FACTOR * tol, ELEM_CAP)


def max_elem_err(out: Any, ref: Any) -> float:
    """Largest max|out-ref| / max|ref| over matching tensors (NaN/inf in out -> inf)."""
    worst = 0.0
    for o, r in zip(_tensors(out), _tensors(ref)):
        o, r = o.detach().to(r.device, torch.float64), r.detach().double()
        if not bool(torch.isfinite(o).all()):
            return math.inf
        den = r.abs().max().item() if r.numel() else 0.0
        num = (o - r).abs().max().item() if r.numel() else 0.0
        worst = max(worst, num / den if den > 0 else num)
    return worst


POISON_COPIES = 4  # NaN blocks per reference output size
POISON_LARGE = 2  # plus this many of twice the largest output (split for smaller allocations)


def _poison_allocator(ref: Any, dtype: str) -> None:
    """Fill the freed blocks a provider's outputs are likely to reuse with NaN, so an unwritten
    element fails. Several blocks per output size stay alive together and are freed at once,
    so a provider that first allocates something else (a .contiguous() copy, a workspace) still
    lands its output in poisoned memory. Best effort: stops quietly when memory runs short."""
    dt = torch_dtype(dtype)
    refs = _tensors(ref)
    held: list[torch.Tensor] = []
    try:
        for r in refs:
            for _ in range(POISON_COPIES):
                held.append(torch.full(r.shape, float("nan"), dtype=dt, device=r.device))
        if refs:
            big = max(refs, key=lambda t: t.numel())
            for _ in range(POISON_LARGE):
                held.append(torch.full((2 * big.numel(),), float("nan"), dtype=dt,
                                       device=big.device))
    except (torch.cuda.OutOfMemoryError, RuntimeError):
        pass
    del held  # all freed together, right before the provider's first call


def _gate(case: Case, slot: Slot, inputs: Any, ref: Any, reps: Repeats) -> None:
    """prepare + first call (compile_s), correctness check, warm-up (est_s per call).

    The default check (no `case.compare`) also bounds every element (`elem_limit`); a row whose
    norm passes but an element does not reports max_rel_err = inf, like an output holding NaN."""
    t0 = time.perf_counter()
    slot.fn = slot.provider.prepare(case, inputs)
    _poison_allocator(ref, case.dtype)
    out = slot.fn()
    _sync()
    slot.compile_s = time.perf_counter() - t0
    limit = case.limit()
    if case.compare is not None:
        slot.err = float(case.compare(out, ref))
    else:
        slot.err = float(max_rel_err(out, ref))
        if slot.err <= limit and not max_elem_err(out, ref) <= elem_limit(limit):
            slot.err = math.inf  # the norm hides a few elements far off (e.g. an unwritten row)
    slot.gate_ok = slot.err <= limit  # NaN compares False: never passes
    del out
    # Warm-up outside timing (autotuning already ran in the first call); estimate per-call time.
    calls, host, t_start = 0, 0.0, time.perf_counter()
    while calls < reps.min_warmup or time.perf_counter() - t_start < reps.warmup_s:
        t_call = time.perf_counter()
        slot.fn()
        host += time.perf_counter() - t_call
        _sync()
        calls += 1
    slot.est_s = (time.perf_counter() - t_start) / calls if calls else slot.compile_s
    slot.host_s = host / calls if calls else slot.compile_s


# Holding the GPU while the host enqueues a chunk (timers with hold=True; see vitbench.bench.
# timers): the hold is HOLD_FACTOR x the expected host time to enqueue the chunk, within
# [HOLD_MIN_S, HOLD_MAX_S]. Expected: per round, the previous chunk's measured enqueue time; for
# the first chunk, the warm-up's host time per call plus RECORD_HOST_S per repetition (events,
# flush launch).
HOLD_FACTOR = 1.5
RECORD_HOST_S = 30e-6


def hold_seconds(per_round_s: float, rounds: int) -> float:
    """How long to hold the GPU before a chunk of `rounds` rounds of `per_round_s` host time."""
    return min(HOLD_MAX_S, max(HOLD_MIN_S, HOLD_FACTOR * per_round_s * rounds))


def _time_interleaved(slots: list[Slot], timer: Timer, reps: Repeats, rng: random.Random) -> None:
    """Time all live providers A B / B A ... in a fresh shuffled order each round."""
    live = [s for s in slots if s.fn is not None and s.error is None]
    for s in live:
        try:
            s.fn = timer.setup(s.fn)
        except Exception as exc:  # e.g. graph capture not possible for this provider
            s.error = "timer setup: " + error_text(exc)
    live = [s for s in live if s.error is None]
    if not live:
        return
    per_round = sum(s.est_s for s in live) + len(live) * timer.per_rep_overhead_s()
    n = reps.max_reps if per_round <= 0 else int(reps.budget_s / per_round)
    n = max(reps.min_reps, min(reps.max_reps, n))
    chunk = max(1, min(50, int(0.02 / per_round) if per_round > 0 else 50))
    holding = bool(getattr(timer, "hold", False))
    if holding:  # keep a held chunk inside the launch queue (else the host blocks on it)
        chunk = max(1, min(chunk, HOLD_MAX_RECORDS // len(live)))
    # host time to enqueue one round: the warm-up's estimate until a chunk has been measured
    enqueue_round_s = sum(s.host_s for s in live) + len(live) * RECORD_HOST_S
    deadline = time.perf_counter() + 4 * reps.budget_s + 2.0
    done = 0
    while done < n and live:
        handles: dict[int, list[Any]] = {id(s): [] for s in live}
        rounds = min(chunk, n - done)
        timer.hold_for(hold_seconds(enqueue_round_s, rounds))  # outside every start/end pair
        t_enqueue = time.perf_counter()
        for _ in range(rounds):
            order = live[:]
            rng.shuffle(order)
            timer.begin_round()
            for s in order:
                if s.error is not None:
                    continue
                try:
                    handles[id(s)].append(timer.record(s.fn))
                except Exception as exc:
                    s.error = error_text(exc)
        enqueue_round_s = (time.perf_counter() - t_enqueue) / rounds
        try:
            for s in live:
                if s.error is None:
                    s.samples.extend(timer.collect(handles[id(s)]))
        except Exception as exc:  # an asynchronous device error: cannot tell whose
            for s in live:
                s.error = s.error or error_text(exc)
        done += rounds
        live = [s for s in live if s.error is None]
        if done >= reps.min_reps and time.perf_counter() > deadline:
            break
    for s in slots:
        if s.error is None and s.samples:
            s.stats = summarize(s.samples)


def run_case(case: Case, providers: Sequence[Provider], timer: Timer, reps: Repeats,
              rng: random.Random) -> list[Slot]:
    slots = [Slot(p) for p in providers]
    for s in slots:
        reason = s.provider.supports(case) if s.provider.supports else None
        if reason:
            s.error = f"skipped: {reason}"
    try:
        with precision_mode(case.precision), torch.inference_mode():
            try:
                inputs = case.inputs()
                ref = case.reference(inputs)
            except Exception as exc:
                for s in slots:
                    s.error = s.error or "inputs/reference: " + error_text(exc)
                return slots
            for s in slots:
                if s.error is None:
                    try:
                        _gate(case, s, inputs, ref, reps)
                    except Exception as exc:
                        s.error, s.fn = error_text(exc), None
            del ref
            _time_interleaved(slots, timer, reps, rng)
    finally:
        for s in slots:
            s.fn = None
        timer.release()
        if _ON_GPU:
            torch.cuda.empty_cache()
    return slots

