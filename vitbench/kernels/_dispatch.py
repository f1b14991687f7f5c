"""Per-shape choice between implementations of one op, made by timing each once.

Autotuning picks a config within one kernel; this picks between kernels (for the linear GEMM:
matmul.py's pointer kernel, matmul_tma.py's persistent TMA kernel and matmul_gluon.py's configs,
whose relative speed depends on the shape: measured on an H100 on 2026-11-27, the TMA kernel was 0.59x the pointer
kernel on the batch-8 QKV GEMM and 1.04x on the batch-8 FC1 GEMM). The first call of a key runs
each candidate once (its own autotuning happens there), times it replayed from a CUDA graph (as
the model runs it, and without the launchers' different Python costs) and caches the fastest;
later calls of that key only look it up. Like autotuning, the first call of each new shape belongs
in a warm-up, not in a timed region or a CUDA graph capture (during a capture nothing is timed:
the caller uses its default and nothing is cached). A candidate that fails while being timed is
skipped with a warning.

    name = lookup(key) or fastest(key, {"pointer": run_a, "tma": run_b})  # calls on scratch data
    choices()                                                # {key: name} made so far
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import triton

from vitbench.kernels._common import TUNE_REP_MS

_CHOICES: dict[tuple, str] = {}


def _median_ms(fn: Callable[[], object]) -> float:
    # Replayed from a CUDA graph (do_bench_cudagraph: one eager call first, which autotunes, then
    # back-to-back launches in a graph): the host's launch cost, which differs between two
    # launchers' Python, stays out, and that is how the model runs them. L2 is not flushed: both
    # candidates see the same warm inputs.
    # do_bench_cudagraph runs fn on a stream of its own: let the inputs' producers finish first.
    torch.cuda.synchronize()
    return float(triton.testing.do_bench_cudagraph(fn, rep=TUNE_REP_MS // 4, return_mode="median"))


def fastest(key: tuple, candidates: dict[str, Callable[[], object]],
            timer: Callable[[Callable[[], object]], float] | None = None) -> str:
    """Name of the fastest candidate for `key` (timed on first use, then cached).

    `timer(fn)` -> ms (default: triton's do_bench median with the autotuner's budget). A candidate
    that raises is skipped; if all raise, the first one's error propagates.
    """
    hit = _CHOICES.get(key)
    if hit is not None:
        return hit
    names = list(candidates)
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return names[0]
    timer = timer or _median_ms
    times: dict[str, float] = {}
    first_error: Exception | None = None
    for name in names:
        try:
            times[name] = timer(candidates[name])
        except Exception as exc:  # e.g. out of shared memory for every config of one kernel
            first_error = first_error or exc
            warnings.warn(f"vitbench: {name} kernel failed while timing {key[0]} {key[1:4]}, "
                          f"not used for this shape: {type(exc).__name__}: {exc}"[:400], stacklevel=2)
    if not times:
        assert first_error is not None
        raise first_error
    best = min(times, key=times.__getitem__)
    _CHOICES[key] = best
    return best


def lookup(key: tuple) -> str | None:
    """The cached choice for `key`, or None before its first timing."""
    return _CHOICES.get(key)


def choices() -> dict[tuple, str]:
    """The choices made so far in this process, {key: candidate name}."""
    return dict(_CHOICES)


def reset() -> None:
    """Forget every choice (the next call of each key times its candidates again)."""
    _CHOICES.clear()
