"""Batched matmul: out[b] = scale * a[b] @ b[b]  (or a[b] @ b[b]^T with transpose_b).

a [B, M, K] or [B, H, M, K]; b [B, K, N] ([B, N, K] when transpose_b), same leading dims.
Every dimension is addressed through its stride (views from permute/transpose/slicing work, the
last dim need not be contiguous); the transposed operand is read through swapped strides, never
copied. fp32 accumulation, `scale` applied to the fp32 accumulator before the one rounding.

Cost (itemsize s, batch Bt = product of leading dims): FLOPs 2*Bt*M*N*K (+ Bt*M*N for the scale);
bytes s*Bt*(M*K + K*N + M*N) (each operand read once, out written once).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels._common import (
    autotune, check_int32_offsets, check_precision, check_same_dtype, check_tensor,
)
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import dot_k_loop, grouped_tile
from vitbench.kernels.matmul import check_out, gemm_config, prune_by_smem


# Interpreter: the first config only (small, quick on a CPU). GPU: attention-sized problems
# (M, N ~ 197..577, K = head dim 32..128) and larger ones.
BMM_CONFIGS = [gemm_config(32, 32, 32, 2, 4)] if INTERPRETER else [
    gemm_config(64, 64, 64, 3, 4),
    gemm_config(64, 64, 32, 4, 4),
    gemm_config(128, 64, 64, 3, 4),
    gemm_config(64, 128, 64, 3, 4),
    gemm_config(128, 128, 64, 3, 8),
    gemm_config(128, 128, 32, 4, 4),
    gemm_config(128, 256, 64, 3, 8),
    gemm_config(32, 64, 64, 4, 4),
]


@autotune(BMM_CONFIGS, key=["M", "N", "K", "PRECISION"],
          prune_configs_by={"early_config_prune": prune_by_smem})
@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _bmm_kernel(
    a_ptr,  # A [B0, B1, M, K], any strides
    b_ptr,  # B [B0, B1, K, N] addressed through (stride_bk, stride_bn); transposed views welcome
    out_ptr,  # out [B0, B1, M, N], any strides
    M, N, K,  # per-batch GEMM sizes
    B1,  # inner batch count (H of a [B, H, M, K] input; 1 for 3-D)
    stride_a0, stride_a1, stride_am, stride_ak,
    stride_b0, stride_b1, stride_bk, stride_bn,
    stride_o0, stride_o1, stride_om, stride_on,
    scale,  # fp32 multiplier of the product
    PRECISION: tl.constexpr,  # tl.dot input_precision (_common.PRECISIONS; ignored for 16-bit)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,  # grouped tile order within one batch entry
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
):
    pdl_start(PDL)
    # One flat grid (no 65535 limit on the batch): program -> (batch entry, output tile).
    pid = tl.program_id(0)
    tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    bid = pid // tiles
    pid_m, pid_n = grouped_tile(pid % tiles, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    b0 = (bid // B1).to(tl.int64)
    b1 = (bid % B1).to(tl.int64)

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # Loads read wrapped (always valid) rows/cols; the store masks the ragged edges.
    a_ptrs = (a_ptr + b0 * stride_a0 + b1 * stride_a1
              + (rm % M)[:, None] * stride_am + offs_k[None, :] * stride_ak)  # [BLOCK_M, BLOCK_K]
    b_ptrs = (b_ptr + b0 * stride_b0 + b1 * stride_b1
              + offs_k[:, None] * stride_bk + (rn % N)[None, :] * stride_bn)  # [BLOCK_K, BLOCK_N]

    # Per K step: read BLOCK_K*(BLOCK_M + BLOCK_N) elements, 2*BLOCK_M*BLOCK_N*BLOCK_K FLOPs.
    acc = dot_k_loop(a_ptrs, b_ptrs, offs_k, K, stride_ak, stride_bk,
                     BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, PRECISION)

    acc = acc * scale
    o_ptrs = (out_ptr + b0 * stride_o0 + b1 * stride_o1
              + rm[:, None] * stride_om + rn[None, :] * stride_on)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def bmm_cost(batch: int, M: int, N: int, K: int, itemsize: int) -> tuple[int, int]:
    """(FLOPs, bytes) of one bmm call; `batch` = product of the leading dims."""
    return 2 * batch * M * N * K, batch * (M * K + K * N + M * N) * itemsize


def _lead_strides(t: torch.Tensor) -> tuple[int, int]:
    """(outer, inner) batch strides: [B, H, ...] -> (sB, sH); [B, ...] -> (sB, 0)."""
    return (t.stride(0), t.stride(1)) if t.dim() == 4 else (t.stride(0), 0)


def bmm(a: torch.Tensor, b: torch.Tensor, *, scale: float = 1.0, transpose_b: bool = False,
        precision: str = "ieee", out: torch.Tensor | None = None) -> torch.Tensor:
    """scale * a @ b (or a @ b^T); a [B, M, K], b [B, K, N] ([B, N, K] when transpose_b).

    4-D inputs [B, H, M, K] treat (B, H) as the batch. Any strides. fp32 inputs use exact
    "ieee" dots unless precision names another mode (_common.PRECISIONS: tf32, bf16x6, ...).
    """
    a = check_tensor("a", a, ndim=(3, 4), contiguous_last=False)
    b = check_tensor("b", b, ndim=a.dim(), contiguous_last=False)
    dtype = check_same_dtype(a=a, b=b)
    dot_precision = check_precision(precision, dtype)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise VitbenchError(f"scale must be a number, got {type(scale).__name__}")
    if a.shape[:-2] != b.shape[:-2]:
        raise VitbenchError(f"batch dims differ: a {tuple(a.shape)} vs b {tuple(b.shape)}")
    M, K = a.shape[-2], a.shape[-1]
    if transpose_b:
        N, Kb = b.shape[-2], b.shape[-1]
        stride_bk, stride_bn = b.stride(-1), b.stride(-2)
    else:
        Kb, N = b.shape[-2], b.shape[-1]
        stride_bk, stride_bn = b.stride(-2), b.stride(-1)
    if Kb != K:
        layout = "[..., N, K]" if transpose_b else "[..., K, N]"
        raise VitbenchError(f"b has shape {tuple(b.shape)} ({layout}); its K {Kb} != a's K {K}")
    out_shape = (*a.shape[:-2], M, N)
    if out is None:
        out = torch.empty(out_shape, dtype=dtype, device=a.device)
    else:
        out = check_out(out, out_shape, dtype, {"a": a, "b": b})
    if out.numel() == 0:
        return out
    batch = out.numel() // (M * N)
    B1 = a.shape[1] if a.dim() == 4 else 1
    for name, t in (("a", a), ("b", b), ("out", out)):
        check_int32_offsets(name, t, from_dim=a.dim() - 2)  # batch terms are int64 in the kernel

    def grid(meta):
        return (batch * triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    _bmm_kernel[grid](
        a, b, out, M, N, K, B1,
        *_lead_strides(a), a.stride(-2), a.stride(-1),
        *_lead_strides(b), stride_bk, stride_bn,
        *_lead_strides(out), out.stride(-2), out.stride(-1),
        float(scale),
        PRECISION=dot_precision,
        **launch_opts(),
    )
    return out
