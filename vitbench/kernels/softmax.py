"""Row-wise softmax over the last dim: out = softmax(scale * x), numerically stable.

In fp32: z = scale * x, m = max(z), out = exp(z - m) / sum(exp(z - m)); inputs of any magnitude
(1e4 in fp16) never overflow because every exponent is <= 0.
Traffic and work of one call over `rows` rows of length N, itemsize b bytes:
  read  x: rows*N*b
  write out: rows*N*b
  FLOPs: 6*rows*N (scale, max, subtract, exp, sum, normalise)
Rows longer than MAX_SINGLE_BLOCK take the online path: pass 1 keeps a running max and a
rescaled running sum, pass 2 re-reads the row (from L2) and writes it; the byte model counts one read.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from vitbench.errors import VitbenchError
from vitbench.kernels._common import check_out, check_tensor, row_autotune, row_tiles, rows_out
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import row_block

# Longest row (elements, a power of 2) held whole in registers; longer rows take the online path.
MAX_SINGLE_BLOCK = 8192


@row_autotune
@triton.jit
def _softmax_kernel(
    x_ptr,  # [n_rows, n_cols] input, rows stride_x apart, last dim contiguous
    out_ptr,  # [n_rows, n_cols] output, rows stride_out apart, same dtype as x
    n_rows,  # number of rows
    n_cols,  # row length N
    stride_x,  # elements between rows of x
    stride_out,  # elements between rows of out
    scale,  # multiplies x before the softmax
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_N: tl.constexpr,  # columns per chunk (>= n_cols on the single-block path)
    SINGLE: tl.constexpr,  # BLOCK_N >= n_cols: whole rows in registers, else the online path
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
):
    pdl_start(PDL)
    LOG2E: tl.constexpr = 1.4426950408889634
    rows, row_ok = row_block(n_rows, BLOCK_M)  # rows past the end re-read the last row
    x_rows = x_ptr + rows[:, None] * stride_x  # [BLOCK_M, 1] row starts
    o_rows = out_ptr + rows[:, None] * stride_out
    cols = tl.arange(0, BLOCK_N)

    if SINGLE:
        col_ok = cols < n_cols
        x = tl.load(x_rows + cols[None, :], mask=col_ok[None, :], other=0.0).to(tl.float32)
        # Mask after scaling: a negative scale must not turn padding into +inf.
        z = tl.where(col_ok[None, :], x * scale, float("-inf"))
        m = tl.max(z, axis=1)
        # z - m is exact for nearby values, so large inputs lose no accuracy here.
        e = tl.exp2((z - m[:, None]) * LOG2E)
        inv = 1.0 / tl.sum(e, axis=1)
        y = e * inv[:, None]
        tl.store(o_rows + cols[None, :], y.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & col_ok[None, :])
    else:
        # Online pass: per row, running max m and running sum l of exp(z - m), rescaled when m
        # grows. While m is still -inf (only -inf seen so far) the shift is 0, not -inf - -inf.
        m = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l = tl.zeros([BLOCK_M], dtype=tl.float32)  # noqa: E741
        for start in range(0, n_cols, BLOCK_N):
            c = start + cols
            c_ok = (c < n_cols)[None, :]
            x = tl.load(x_rows + c[None, :], mask=c_ok, other=0.0).to(tl.float32)
            z = tl.where(c_ok, x * scale, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, axis=1))
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2((z - shift[:, None]) * LOG2E)
            l = l * tl.exp2((m - shift) * LOG2E) + tl.sum(p, axis=1)  # noqa: E741
            m = m_new
        inv = 1.0 / l
        for start in range(0, n_cols, BLOCK_N):
            c = start + cols
            c_ok = (c < n_cols)[None, :]
            x = tl.load(x_rows + c[None, :], mask=c_ok, other=0.0).to(tl.float32)
            z = tl.where(c_ok, x * scale, float("-inf"))  # padding -> exp2(-inf) = 0, not inf
            y = tl.exp2((z - m[:, None]) * LOG2E) * inv[:, None]
            tl.store(o_rows + c[None, :], y.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & c_ok)


def softmax_cost(rows: int, cols: int, itemsize: int) -> tuple[int, int]:
    """(FLOPs, bytes) of one call: x read once, out written once."""
    return 6 * rows * cols, 2 * rows * cols * itemsize


def softmax(x: torch.Tensor, *, scale: float = 1.0, out: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise softmax(scale * x) over the last dim of x [..., N]; any row length.

    x's last dim must be contiguous; its rows may be strided (leading dims that cannot be merged
    into one row stride are copied first). `out`, if given, must have x's shape and dtype and be
    viewable as [rows, N]; it may share x's memory (then the result goes through a temporary,
    since autotuning re-runs the kernel on its arguments).
    """
    check_tensor("x", x)
    if x.dim() < 1:
        raise VitbenchError("x must have at least 1 dim [..., N], got a 0-dim tensor")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise VitbenchError(f"scale must be a finite number, got {scale!r}")
    N = x.shape[-1]
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, x.shape, x.dtype, x.device, like="x's")
    if x.numel() == 0:
        return out
    x2 = x.reshape(-1, N)
    o2, dst = rows_out(x, out, N)
    n_rows = x2.shape[0]
    block_m, block_n = row_tiles(n_rows, N, x.device, MAX_SINGLE_BLOCK)
    grid = lambda meta: (triton.cdiv(n_rows, meta["BLOCK_M"]),)  # noqa: E731
    _softmax_kernel[grid](
        x2, dst, n_rows, N, x2.stride(0), dst.stride(0), float(scale),
        BLOCK_M=block_m, BLOCK_N=block_n, SINGLE=block_n >= N,
        **launch_opts(),
    )
    if dst is not o2:
        o2.copy_(dst)
    return out
