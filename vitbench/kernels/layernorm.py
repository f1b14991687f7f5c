"""LayerNorm over the last dim, and the variant that fuses the residual add before it.

  layernorm(x):          out = (x - mean) / sqrt(var + eps) * weight + bias
  add_layernorm(x, r):   s = x + r;  out = layernorm(s);  both s and out are written

Statistics are always fp32 (two-pass: mean, then mean of squared deviations), whatever the
storage dtype. Traffic and work of one call over `rows` rows of width D, itemsize b bytes:
  read  x: rows*D*b, weight + bias: 2*D*b          (+ residual: rows*D*b when fused)
  write out: rows*D*b                               (+ s: rows*D*b when fused)
  FLOPs: 7*rows*D (sum, subtract, square, accumulate, * rstd, * weight, + bias) (+ rows*D add)
Rows wider than MAX_SINGLE_BLOCK take the looped path, which re-reads each row twice more
(from L2 on a GPU); the byte model above counts one read.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from vitbench.errors import VitbenchError
from vitbench.kernels._common import (
    check_out, check_same_dtype, check_tensor, row_autotune, row_tiles, rows_out,
)
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import row_block, tf32_rounded

# Widest row (elements, a power of 2) held whole in registers; wider rows loop over chunks of it.
MAX_SINGLE_BLOCK = 8192


@row_autotune
@triton.jit
def _layernorm_kernel(
    x_ptr,  # [n_rows, n_cols] input, rows stride_x apart, last dim contiguous
    r_ptr,  # [n_rows, n_cols] residual, rows stride_r apart (read only if HAS_RESIDUAL)
    s_ptr,  # [n_rows, n_cols] output x + residual, rows stride_s apart (written only if HAS_RESIDUAL)
    w_ptr,  # [n_cols] weight
    b_ptr,  # [n_cols] bias
    out_ptr,  # [n_rows, n_cols] normalised output, rows stride_out apart
    n_rows,  # number of rows
    n_cols,  # row width D
    stride_x,  # elements between rows of x
    stride_r,  # elements between rows of residual
    stride_s,  # elements between rows of s
    stride_out,  # elements between rows of out
    eps,  # added to the variance
    HAS_RESIDUAL: tl.constexpr,  # fuse s = x + residual before normalising
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_N: tl.constexpr,  # columns per chunk (>= n_cols on the single-block path)
    SINGLE: tl.constexpr,  # BLOCK_N >= n_cols: whole rows in registers, else loop over chunks
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
    TF32_OUT: tl.constexpr = False,  # fp32 out stored rounded to TF32 (_tiles.tf32_rounded)
):
    pdl_start(PDL)
    rows, row_ok = row_block(n_rows, BLOCK_M)  # rows past the end re-read the last row
    x_rows = x_ptr + rows[:, None] * stride_x  # [BLOCK_M, 1] row starts
    r_rows = r_ptr + rows[:, None] * stride_r
    s_rows = s_ptr + rows[:, None] * stride_s
    o_rows = out_ptr + rows[:, None] * stride_out
    cols = tl.arange(0, BLOCK_N)

    if SINGLE:
        # Single-block path: the whole row stays in registers; x read once, out written once.
        col_ok = cols < n_cols
        ld_mask = col_ok[None, :]
        st_mask = row_ok[:, None] & col_ok[None, :]
        x = tl.load(x_rows + cols[None, :], mask=ld_mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            r = tl.load(r_rows + cols[None, :], mask=ld_mask, other=0.0).to(tl.float32)
            s = (x + r).to(s_ptr.dtype.element_ty)
            tl.store(s_rows + cols[None, :], s, mask=st_mask)
            x = s.to(tl.float32)  # normalise the rounded sum that the caller gets back
        mean = tl.sum(x, axis=1) / n_cols
        d = tl.where(ld_mask, x - mean[:, None], 0.0)
        var = tl.sum(d * d, axis=1) / n_cols
        rstd = 1.0 / tl.sqrt(var + eps)
        w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        y = d * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(o_rows + cols[None, :], tf32_rounded(y.to(out_ptr.dtype.element_ty), TF32_OUT), mask=st_mask)
    else:
        # Looped path for long rows: pass 1 sums (and writes s), pass 2 sums squared
        # deviations, pass 3 normalises. Passes 2-3 re-read the row (from L2).
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK_N):
            c = start + cols
            ld_mask = (c < n_cols)[None, :]
            x = tl.load(x_rows + c[None, :], mask=ld_mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:
                r = tl.load(r_rows + c[None, :], mask=ld_mask, other=0.0).to(tl.float32)
                s = (x + r).to(s_ptr.dtype.element_ty)
                tl.store(s_rows + c[None, :], s, mask=row_ok[:, None] & ld_mask)
                x = s.to(tl.float32)
            acc += x
        mean = tl.sum(acc, axis=1) / n_cols
        if HAS_RESIDUAL:
            tl.debug_barrier()  # s written by other threads of this program must be visible
        src_rows = s_rows if HAS_RESIDUAL else x_rows
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK_N):
            c = start + cols
            ld_mask = (c < n_cols)[None, :]
            x = tl.load(src_rows + c[None, :], mask=ld_mask, other=0.0).to(tl.float32)
            d = tl.where(ld_mask, x - mean[:, None], 0.0)
            acc += d * d
        rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / n_cols + eps)
        for start in range(0, n_cols, BLOCK_N):
            c = start + cols
            col_ok = c < n_cols
            x = tl.load(src_rows + c[None, :], mask=col_ok[None, :], other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c, mask=col_ok, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + c, mask=col_ok, other=0.0).to(tl.float32)
            y = (x - mean[:, None]) * rstd[:, None] * w[None, :] + b[None, :]
            tl.store(o_rows + c[None, :], tf32_rounded(y.to(out_ptr.dtype.element_ty), TF32_OUT),
                     mask=row_ok[:, None] & col_ok[None, :])


def layernorm_cost(rows: int, D: int, itemsize: int, fused_residual: bool = False) -> tuple[int, int]:
    """(FLOPs, bytes) of one call: each input read once, each output written once."""
    flops = (8 if fused_residual else 7) * rows * D
    tensors = 4 if fused_residual else 2  # x, out (+ residual, s)
    return flops, (tensors * rows * D + 2 * D) * itemsize


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise VitbenchError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_params(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, xname: str = "x") -> int:
    check_tensor(xname, x)
    if x.dim() < 1:
        raise VitbenchError(f"{xname} must have at least 1 dim [..., D], got a 0-dim tensor")
    D = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        check_tensor(name, p, ndim=1)
        if p.shape[0] != D:
            raise VitbenchError(f"{name} has shape {tuple(p.shape)}, expected ({D},) to match {xname}")
        if p.device != x.device:
            raise VitbenchError(f"{name} is on {p.device} but {xname} is on {x.device}")
    check_same_dtype(**{xname: x, "weight": weight, "bias": bias})
    return D


def _launch(x2, r2, s2, weight, bias, o2, eps: float, tf32: bool = False) -> None:
    n_rows, D = x2.shape
    if n_rows == 0 or D == 0:
        return
    block_m, block_n = row_tiles(n_rows, D, x2.device, MAX_SINGLE_BLOCK)
    fused = r2 is not None
    r2 = r2 if fused else x2  # placeholders, never touched when HAS_RESIDUAL is off
    s2 = s2 if fused else o2
    grid = lambda meta: (triton.cdiv(n_rows, meta["BLOCK_M"]),)  # noqa: E731
    _layernorm_kernel[grid](
        x2, r2, s2, weight, bias, o2, n_rows, D,
        x2.stride(0), r2.stride(0), s2.stride(0), o2.stride(0), eps,
        HAS_RESIDUAL=fused, BLOCK_M=block_m, BLOCK_N=block_n, SINGLE=block_n >= D, TF32_OUT=tf32,
        **launch_opts(),
    )


def layernorm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
    *, out: torch.Tensor | None = None, tf32_out: bool = False,
) -> torch.Tensor:
    """LayerNorm over the last dim of x [..., D]; fp32 statistics whatever the storage dtype.

    x's last dim must be contiguous; its rows may be strided (leading dims that cannot be merged
    into one row stride are copied first). weight and bias are [D] in x's dtype. `out`, if given,
    must have x's shape and dtype and be viewable as [rows, D]; it may share x's memory (then
    the result goes through a temporary, since autotuning re-runs the kernel on its arguments).
    tf32_out=True stores an fp32 output rounded to the nearest TF32 value (no effect on 16-bit
    ones): for a consumer GEMM run with `matmul(..., tf32_exact=True)`.
    """
    D = _check_params(x, weight, bias)
    eps = _check_eps(eps)
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, x.shape, x.dtype, x.device, like="x's")
    if x.numel() == 0:
        return out
    o2, dst = rows_out(x, out, D)
    _launch(x.reshape(-1, D), None, None, weight, bias, dst, eps, tf32=bool(tf32_out))
    if dst is not o2:
        o2.copy_(dst)
    return out


def add_layernorm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """s = x + residual; returns (s, layernorm(s)) from one pass over the rows.

    x and residual have the same shape [..., D] and dtype; the normalised output is computed from
    s as stored (rounded to the dtype), so it equals layernorm(s) exactly in semantics.
    """
    D = _check_params(x, weight, bias)
    check_tensor("residual", residual)
    if tuple(residual.shape) != tuple(x.shape):
        raise VitbenchError(f"residual has shape {tuple(residual.shape)}, expected x's {tuple(x.shape)}")
    if residual.device != x.device:
        raise VitbenchError(f"residual is on {residual.device} but x is on {x.device}")
    check_same_dtype(x=x, residual=residual)
    eps = _check_eps(eps)
    s = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return s, out
    _launch(x.reshape(-1, D), residual.reshape(-1, D), s.view(-1, D), weight, bias,
            out.view(-1, D), eps)
    return s, out
