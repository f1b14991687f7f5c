"""Elementwise add `out = x + y`, y broadcast over x's leading dims ([B,T,D] + [1,T,D], [D]).

Traffic and work of one call, x with n_out elements, y with n_y elements, itemsize s bytes:
  read  x: n_out * s, y: n_y * s (the broadcast re-reads of y hit L2)
  write out: n_out * s
  FLOPs: n_out (one add per output element)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vitbench.errors import VitbenchError
from vitbench.kernels._common import check_out, check_same_dtype, check_tensor
from vitbench.kernels._pdl import launch_opts, pdl_start

# Bytes of x per program: 16 KiB = 4096 fp32 or 8192 fp16/bf16 elements; with 8 warps each
# thread moves 4 x 16-byte vectors per tensor, enough in flight to saturate HBM.
_BLOCK_BYTES = 16384
_NUM_WARPS = 8
_INT32_LIMIT = 2**31 - 1


@triton.jit
def _add_kernel(
    x_ptr,  # [n_out] flat input, contiguous
    y_ptr,  # [n_y] flat input, contiguous; element i of out reads y[i % n_y]
    out_ptr,  # [n_out] flat output, contiguous, same dtype as x
    n_out,  # number of output elements
    n_y,  # number of y elements (divides n_out)
    BLOCK: tl.constexpr,  # elements per program (power of 2)
    BROADCAST: tl.constexpr,  # n_y < n_out: index y modulo n_y
    VEC: tl.constexpr,  # n_y % VEC == 0: runs of VEC y-offsets are contiguous and aligned
    INT64: tl.constexpr,  # offsets may pass 2**31: compute them in int64
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
):
    pdl_start(PDL)
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_out
    x = tl.load(x_ptr + offs, mask=mask)
    if BROADCAST:
        y_offs = offs % n_y
        # Groups of VEC consecutive outputs start at multiples of VEC and never wrap inside a
        # group (n_y % VEC == 0), so y can still be loaded in 16-byte vectors.
        y_offs = tl.max_contiguous(tl.multiple_of(y_offs, VEC), VEC)
    else:
        y_offs = offs
    y = tl.load(y_ptr + y_offs, mask=mask)
    # Sum in fp32, rounded once to the storage dtype (what torch does for fp16/bf16).
    out = x.to(tl.float32) + y.to(tl.float32)
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def add_cost(n_out: int, n_y: int, itemsize: int) -> tuple[int, int]:
    """(FLOPs, bytes) of one add: x and y read once, out written once."""
    return n_out, (2 * n_out + n_y) * itemsize


def _broadcast_shape(x: torch.Tensor, y: torch.Tensor) -> tuple[int, ...]:
    """y's shape without leading 1s; it must be a suffix of x's shape."""
    if y.dim() > x.dim():
        raise VitbenchError(
            f"y has more dims than x: y {tuple(y.shape)} cannot broadcast onto x {tuple(x.shape)}"
        )
    core = list(y.shape)
    while core and core[0] == 1:
        core.pop(0)
    if core and tuple(x.shape[-len(core):]) != tuple(core):
        raise VitbenchError(
            f"y {tuple(y.shape)} must match a suffix of x {tuple(x.shape)} (after leading 1s), "
            "e.g. [B,T,D] + [1,T,D] or [D]"
        )
    return tuple(core)


def add(x: torch.Tensor, y: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """out = x + y, y broadcast over x's leading dims (e.g. [B,T,D] + [1,T,D] or [D]).

    x and y must be contiguous; the result has x's shape and dtype. `out` (optional) must be a
    contiguous tensor of x's shape and dtype; it may be x itself (in-place add).
    """
    check_tensor("x", x)
    check_tensor("y", y)
    if not x.is_contiguous():
        raise VitbenchError(f"x must be contiguous (shape {tuple(x.shape)}, strides {x.stride()})")
    if not y.is_contiguous():
        raise VitbenchError(f"y must be contiguous (shape {tuple(y.shape)}, strides {y.stride()})")
    if y.device != x.device:
        raise VitbenchError(f"y is on {y.device} but x is on {x.device}")
    check_same_dtype(x=x, y=y)
    _broadcast_shape(x, y)
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    else:
        check_out(out, x.shape, x.dtype, x.device, contiguous=True, like="x's")
    n_out, n_y = x.numel(), y.numel()
    if n_out == 0:
        return out
    block = _BLOCK_BYTES // x.element_size()
    vec = 16 // x.element_size()
    grid = (triton.cdiv(n_out, block),)
    _add_kernel[grid](
        x, y, out, n_out, n_y,
        BLOCK=block,
        BROADCAST=n_y != n_out,
        VEC=vec if n_y % vec == 0 else 1,
        INT64=n_out + block > _INT32_LIMIT,
        num_warps=_NUM_WARPS,
        **launch_opts(),
    )
    return out
