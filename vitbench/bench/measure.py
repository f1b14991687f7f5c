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
from vitbench.bench.timers import Timer
from vitbench.numerics import rel_err

_ON_GPU = HAS_CUDA and not INTERPRETER


@dataclass
class Slot:
    """One provider's state within a case."""

    provider: Provider
    fn: Callable[[], Any] | None = None
    est_s: float = 0.0
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


def _poison_allocator(ref: Any, dtype: str) -> None:
    """Fill freed blocks the output is likely to reuse with NaN: an unwritten output fails."""
    dt = torch_dtype(dtype)
    for r in _tensors(ref):
        torch.full(r.shape, float("nan"), dtype=dt, device=r.device)  # freed at once


def _gate(case: Case, slot: Slot, inputs: Any, ref: Any, reps: Repeats) -> None:
    """prepare + first call (compile_s), correctness check, warm-up (est_s per call)."""
    t0 = time.perf_counter()
    slot.fn = slot.provider.prepare(case, inputs)
    _poison_allocator(ref, case.dtype)
    out = slot.fn()
    _sync()
    slot.compile_s = time.perf_counter() - t0
    compare = case.compare or max_rel_err
    slot.err = float(compare(out, ref))
    slot.gate_ok = slot.err <= case.limit()  # NaN compares False: never passes
    del out
    # Warm-up outside timing (autotuning already ran in the first call); estimate per-call time.
    calls, t_start = 0, time.perf_counter()
    while calls < reps.min_warmup or time.perf_counter() - t_start < reps.warmup_s:
        slot.fn()
        _sync()
        calls += 1
    slot.est_s = (time.perf_counter() - t_start) / calls if calls else slot.compile_s


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
    deadline = time.perf_counter() + 4 * reps.budget_s + 2.0
    done = 0
    while done < n and live:
        handles: dict[int, list[Any]] = {id(s): [] for s in live}
        for _ in range(min(chunk, n - done)):
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
        try:
            for s in live:
                if s.error is None:
                    s.samples.extend(timer.collect(handles[id(s)]))
        except Exception as exc:  # an asynchronous device error: cannot tell whose
            for s in live:
                s.error = s.error or error_text(exc)
        done += chunk
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

