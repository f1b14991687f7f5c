"""Layernorm folded into the GEMMs around it (VITBENCH_LN_FOLD: auto, the default, folds in
forwards of at most LN_FOLD_AUTO_ROWS token rows; 1 always; 0 never).

A pre-norm layer computes LN(h) @ W^T + b with LN(h) = (h - mean) * rstd * gamma + beta. With
W' = W diag(gamma), colsum[n] = sum_k W'[n, k] and b' = b + W beta, that is

    rstd[m] * (h @ W'^T - mean[m] * colsum)[m, n] + b'[n]

so the GEMM can read the raw residual stream h, and only each row's mean and rstd are needed.
Those come from the GEMM that wrote h (the residual epilogue of the out-projection or FC2): as it
stores each output tile it also stores, per row and per 32 columns, the sum and the sum of squares
of the values it stored (`store_row_stats`): a [M, 2, N/32] fp32 buffer, written once per element
(no atomics, deterministic). The next GEMM's epilogue sums a row's N/32 partials
(`apply_ln_fold`): mean = S1/D, var = S2/D - mean^2, rstd = 1/sqrt(var + eps). So no layernorm
kernel runs and the normalised tensor is never written: per layernorm at ViT-B/16 batch 128, 39 MB
read and 39 MB written fewer, and one launch fewer (docs/performance.md, section 4 (g)).

Numerics: the stats describe h as stored (rounded to its dtype), as a layernorm would read it;
W' is rounded to the weights' dtype where HF rounds LN(h) instead; var from E[x^2] - mean^2 in
fp32 loses precision only when |mean| is thousands of times the row's standard deviation.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from vitbench.errors import VitbenchError

CHUNK = 32  # columns per partial sum; a row's width must be a multiple of it
LN_FOLD_ENV = "VITBENCH_LN_FOLD"
LN_FOLD_MODES = ("auto", "1", "0")
# auto: fold in forwards of at most this many token rows (B*T). ViT-B/16 bf16 on an H100
# (2026-11-27, docs/performance.md step 8): batch 1 (197 rows) 0.502 ms folded vs 0.521 not;
# batch 8 (1576 rows) 1.081 vs 1.03, and batches 32-256 slower too (the folded GEMMs lose their
# warp-specialised configs, and the pointer kernel's row stats cost more than they save).
LN_FOLD_AUTO_ROWS = 512


def ln_fold_setting() -> str:
    """VITBENCH_LN_FOLD: "auto" (unset or ""), "1" or "0"; anything else is a VitbenchError."""
    raw = os.environ.get(LN_FOLD_ENV, "").strip() or "auto"
    if raw not in LN_FOLD_MODES:
        raise VitbenchError(f"{LN_FOLD_ENV}={raw!r}: use auto (fold in forwards of at most "
                            f"{LN_FOLD_AUTO_ROWS} token rows; the default), 1 (always) or 0 (never)")
    return raw


def ln_fold_rows(mode: str, rows: int) -> bool:
    """Whether a forward of `rows` token rows folds its layernorms under `mode`."""
    return mode == "1" or (mode == "auto" and rows <= LN_FOLD_AUTO_ROWS)


class LNFold(NamedTuple):
    """A GEMM's folded layernorm input: row stats of its A (from `row_stats_buffer`, filled by the
    GEMM that wrote A), colsum[n] = sum_k W'[n, k] (fp32, [N]) and the layernorm's eps."""

    stats: torch.Tensor
    colsum: torch.Tensor
    eps: float


def row_stats_buffer(rows: int, width: int, device: torch.device) -> torch.Tensor:
    """A [rows, 2, width / CHUNK] fp32 buffer for `store_row_stats` (uninitialised)."""
    if width % CHUNK:
        raise VitbenchError(f"row stats need a width that is a multiple of {CHUNK}, got {width}")
    return torch.empty(rows, 2, width // CHUNK, dtype=torch.float32, device=device)


def check_stats(name: str, t: object, rows: int, width: int, device: torch.device) -> torch.Tensor:
    """`t` must be a contiguous fp32 [rows, 2, width / CHUNK] tensor on `device`."""
    want = (rows, 2, width // CHUNK)
    if width % CHUNK:
        raise VitbenchError(f"{name}: row stats need a row width that is a multiple of {CHUNK}, got {width}")
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or tuple(t.shape) != want \
            or not t.is_contiguous() or t.device != device:
        got = f"{tuple(t.shape)} {t.dtype} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise VitbenchError(f"{name} must be a contiguous float32 {list(want)} tensor on {device}; got {got}")
    return t


def check_ln(ln: object, rows: int, K: int, N: int, device: torch.device) -> LNFold:
    """Validate a matmul's `ln=` argument for A [rows, K] and W [N, K]."""
    if not isinstance(ln, LNFold):
        raise VitbenchError(f"ln must be an LNFold(stats, colsum, eps), got {type(ln).__name__}")
    check_stats("ln.stats", ln.stats, rows, K, device)
    c = ln.colsum
    if not isinstance(c, torch.Tensor) or c.dtype != torch.float32 or tuple(c.shape) != (N,) or c.device != device:
        raise VitbenchError(f"ln.colsum must be a float32 [{N}] tensor on {device}")
    if not (isinstance(ln.eps, (int, float)) and ln.eps > 0):
        raise VitbenchError(f"ln.eps must be a positive number, got {ln.eps!r}")
    return ln


def fold_layernorm(gamma: torch.Tensor, beta: torch.Tensor, w: torch.Tensor,
                   b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W' = W diag(gamma) in w's dtype, b' = b + W beta in w's dtype, colsum = row sums of the
    rounded W' in fp32) for a linear layer [N, K] that follows a layernorm over K."""
    w32 = w.float()
    w_f = (w32 * gamma.float()[None, :]).to(w.dtype)
    b_f = w32 @ beta.float() + (b.float() if b is not None else 0.0)
    return w_f, b_f.to(w.dtype), w_f.float().sum(dim=1)


@triton.jit
def apply_ln_fold(acc, rows, row_ok, cols, col_ok, ln_ptr, colsum_ptr, K, eps, LN_CP2: tl.constexpr):
    """acc [BLOCK_M, BLOCK_N] = (A @ W'^T) tile -> rstd * (acc - mean * colsum), the rows' mean and
    rstd from their K / 32 partial sums at ln_ptr ([M, 2, K / 32] fp32; LN_CP2: K / 32 rounded up
    to a power of 2)."""
    n_chunks = K // 32
    c = tl.arange(0, LN_CP2)
    base = ln_ptr + rows.to(tl.int64)[:, None] * (2 * n_chunks) + c[None, :]
    ok = row_ok[:, None] & (c[None, :] < n_chunks)
    s1 = tl.sum(tl.load(base, mask=ok, other=0.0), axis=1)
    s2 = tl.sum(tl.load(base + n_chunks, mask=ok, other=0.0), axis=1)
    mean = s1 / K
    var = tl.maximum(s2 / K - mean * mean, 0.0)
    rstd = 1.0 / tl.sqrt(var + eps)
    colsum = tl.load(colsum_ptr + cols, mask=col_ok, other=0.0)
    return (acc - mean[:, None] * colsum[None, :]) * rstd[:, None]


@triton.jit
def store_row_stats(y, rows, row_ok, col0, col_ok, stats_ptr, N, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr):
    """Per row of the stored tile y [BLOCK_M, BLOCK_N] (fp32 values as stored; columns col0 +
    0..BLOCK_N-1, col0 a multiple of 32) and per 32 columns: the sum and the sum of squares, into
    stats_ptr [M, 2, N / 32]. Columns past N count as 0; rows past M are not stored."""
    y = tl.where(col_ok[None, :], y, 0.0)
    s1 = tl.sum(tl.reshape(y, [BLOCK_M, BLOCK_N // 32, 32]), axis=2)
    s2 = tl.sum(tl.reshape(y * y, [BLOCK_M, BLOCK_N // 32, 32]), axis=2)
    n_chunks = N // 32
    ch = col0 // 32 + tl.arange(0, BLOCK_N // 32)
    ptrs = stats_ptr + rows.to(tl.int64)[:, None] * (2 * n_chunks) + ch[None, :]
    ok = row_ok[:, None] & (ch[None, :] < n_chunks)
    tl.store(ptrs, s1, mask=ok)
    tl.store(ptrs + n_chunks, s2, mask=ok)
