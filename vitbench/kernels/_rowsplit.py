"""Row split: one GEMM run as two launches, rows [0, m1) then [m1, M), when that is faster.

Why: a GEMM of T output tiles on P SMs runs in ceil(T / P) rounds. When the last round is mostly
empty, most SMs idle through it. ViT-B/16 at batch 32 (M = 6,304 rows, H100, 132 SMs): FC2 and the
out-projection have 300 tiles of 128x128 (2.27 rounds of work in 3 rounds of time), FC1 1,200 on
264 programs (4.55 in 5). Rows [0, 5632) are whole rounds for every tile shape in `TILES` there
(44 row tiles of 128 x 6, 18 or 24 column tiles = a multiple of 132); the other 672 rows are a
small GEMM of their own, whose kernel and config are chosen for it (a 672-row GEMM fills the SMs
with smaller tiles). Batch 8 (1,576 rows): 1,408 + 168 with 64-row tiles. The split point depends
on the shape only, not on the config the autotuner picks, so `split_points` proposes the points
where some common tile shape wastes more than MIN_WASTE of its last round, and the choice
between the whole GEMM and each split is timed (kernels/_dispatch.py: CUDA-graph replays, once
per shape, cached), so a split runs only where it measured faster.

VITBENCH_ROW_SPLIT=0 turns it off (A/B runs); the interpreter and CPU never split (nothing to time).
GEMMs with a folded layernorm (matmul's `ln` / `row_stats`) and fp32 GEMMs never split. The timing
replays CUDA graphs, as the model runs: an eager caller also pays the second launch's host cost.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from vitbench._backend import INTERPRETER
from vitbench.kernels import _dispatch
from vitbench.kernels._common import _sm_count
from vitbench.kernels._env import env_flag

ROW_SPLIT_ENV = "VITBENCH_ROW_SPLIT"
# (BLOCK_M, BLOCK_N) tile shapes the GEMM configs use most (matmul.py, matmul_tma.py)
TILES = ((64, 128), (128, 128), (128, 256), (256, 128))
MIN_WASTE = 0.08  # a tile shape's idle share of its rounds' time (1 - rounds / ceil(rounds)) to act on
MAX_REST = 0.30  # the second launch's share of the rows, at most
MAX_POINTS = 2  # split points timed per shape, at most (each adds two GEMM shapes to autotune)


def row_split_setting() -> bool:
    """VITBENCH_ROW_SPLIT as a bool: unset, "" or "1" -> True; "0" -> False; else VitbenchError."""
    return env_flag(ROW_SPLIT_ENV, "time a two-launch row split of GEMMs whose last round of tiles "
                    "is mostly idle", default=True)


@functools.lru_cache(maxsize=None)
def split_points(M: int, N: int, sms: int) -> tuple[int, ...]:
    """Row counts m1 (largest first) at which rows [0, m1) of an [M, N] output are whole rounds of
    tiles on `sms` SMs for a tile shape of TILES that wastes more than MIN_WASTE of its rounds on
    all M rows, and the rest, M - m1, is at most MAX_REST of M. Empty when none."""
    if M <= 0 or N <= 0 or sms <= 0:
        return ()
    points = set()
    for bm, bn in TILES:
        col_tiles = -(-N // bn)
        rounds = -(-M // bm) * col_tiles / sms
        if 1 - rounds / math.ceil(rounds) <= MIN_WASTE:
            continue
        unit = bm * (sms // math.gcd(sms, col_tiles))  # rows of one or more whole rounds
        m1 = M // unit * unit
        if 0 < m1 < M and M - m1 <= MAX_REST * M:
            points.add(m1)
    return tuple(sorted(points, reverse=True)[:MAX_POINTS])


def _rows(t: torch.Tensor | None) -> torch.Tensor | None:
    """`t` as a 2-D [rows, cols] view (None if it has no such view, or is None)."""
    if t is None or t.dim() == 2:
        return t
    try:
        return t.view(-1, t.shape[-1])
    except RuntimeError:
        return None


def run_split(gemm: Callable[..., torch.Tensor], m1: int, a: torch.Tensor, w: torch.Tensor,
              bias: torch.Tensor | None, epilogue: str, residual: torch.Tensor | None,
              out: torch.Tensor, rest: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """gemm on rows [0, m1), then `rest` (default: gemm) on rows [m1, M), of 2-D views of a,
    residual and out (each `gemm(a, w, bias, epilogue=, residual=, out=)` call is one unsplit
    GEMM); returns out."""
    a2, r2, o2 = _rows(a), _rows(residual), _rows(out)
    for fn, lo, hi in ((gemm, 0, m1), (rest or gemm, m1, a2.shape[0])):
        fn(a2[lo:hi], w, bias, epilogue=epilogue, residual=None if r2 is None else r2[lo:hi],
           out=o2[lo:hi])
    return out


def _like(t: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor with t's shape, strides, dtype and device."""
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)


def in_place(residual: torch.Tensor | None, out: torch.Tensor | None) -> bool:
    """Whether `out` is `residual` (the same view): x = x + f(x) in place."""
    return (out is not None and residual is not None and out.data_ptr() == residual.data_ptr()
            and out.stride() == residual.stride())


def scratch_outputs(a: torch.Tensor, N: int, residual: torch.Tensor | None, out: torch.Tensor | None,
                    inplace: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(residual, out) to time a GEMM call on without touching the real out: scratch in the real
    call's layout (so that kernel choices timed on them are the ones the real call looks up); an
    in-place residual on a copy, which is then also the out."""
    res = _like(residual).copy_(residual) if inplace else residual
    scratch = res if inplace else (
        _like(out) if out is not None
        else torch.empty((*a.shape[:-1], N), dtype=a.dtype, device=a.device))
    return res, scratch


def _timed_here(a: torch.Tensor) -> bool:
    """Whether a split of this call can be timed: a CUDA tensor, outside the interpreter."""
    return not INTERPRETER and a.device.type == "cuda"


def choose(gemm: Callable[..., torch.Tensor], a: torch.Tensor, w: torch.Tensor,
           bias: torch.Tensor | None, epilogue: str, residual: torch.Tensor | None,
           out: torch.Tensor | None, rest: Callable[..., torch.Tensor] | None = None) -> int | None:
    """The row m1 to split this call at, or None to run it whole: `split_points` of its shape,
    each (`gemm` on the first rows, `rest` (default gemm) on the others) timed against the whole
    GEMM on the first call of the shape (on scratch outputs; an in-place residual on a copy), then
    cached. None without a CUDA device, in the interpreter,
    with VITBENCH_ROW_SPLIT=0, for inputs with no 2-D row view, and during a graph capture of an
    untimed shape."""
    if not (_timed_here(a) and row_split_setting()):
        return None
    if _rows(a) is None or (residual is not None and _rows(residual) is None) or (
            out is not None and _rows(out) is None):
        return None
    if a.numel() == 0 or w.numel() == 0:
        return None
    M, N = a.numel() // a.shape[-1], w.shape[0]
    points = split_points(M, N, _sm_count(a.device.index or 0))
    if not points:
        return None
    inplace = in_place(residual, out)
    # the layout of _route's key (vitbench.bench.metadata.kernel_choices unpacks its first 8),
    # then whether the second launch is `rest` (a split timed with one is not the other's choice)
    key = ("matmul-rows", tuple(a.shape), a.stride(-2), N, a.dtype, epilogue, bias is not None,
           inplace, a.device, w.stride(0), None if out is None else out.stride(-2),
           None if residual is None else residual.stride(-2), rest is not None)
    hit = _dispatch.lookup(key)
    if hit is None:
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return None  # nothing can be timed inside a capture: whole, uncached
        res, scratch = scratch_outputs(a, N, residual, out, inplace)
        kw = dict(epilogue=epilogue, residual=res, out=scratch)
        candidates = {"whole": lambda: gemm(a, w, bias, **kw)}
        for m1 in points:
            candidates[f"rows {m1}+{M - m1}"] = (
                lambda m1=m1: run_split(gemm, m1, a, w, bias, epilogue, res, scratch, rest))
        hit = _dispatch.fastest(key, candidates)
    return None if hit == "whole" else int(hit.split()[1].split("+")[0])
