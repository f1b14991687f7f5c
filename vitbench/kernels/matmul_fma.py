"""Exact fp32 linear-layer GEMM on the CUDA cores, written in Gluon: out = epi(A @ W^T + bias).

Why: with exact fp32 ("ieee") dots Triton's `tl.dot` runs its own FMA lowering, which on an H100
reached 21-25 TFLOP/s on the ViT-B/16 GEMMs against cuBLAS SGEMM's 38-53 (0.47-0.54x). This kernel
lays the work out by hand, as a classic register-blocked SGEMM (docs/performance.md, step 17):
- a BLOCK_M x BLOCK_N tile per program, in grouped order (GROUP_M row tiles per column sweep);
- the accumulator in a BlockedLayout whose 4x4 blocks repeat so that each thread owns an 8x8
  micro-tile of four 4x4 blocks, 64 (or 32) rows / columns apart;
- A [M, K] and W [N, K] (both K-contiguous) are read from global memory with 16-byte loads into
  registers, then stored transposed ([BLOCK_K, BLOCK_M] and [BLOCK_K, BLOCK_N], M / N contiguous)
  into double-buffered shared memory, so that per k each thread reads its 8 rows of A and 8
  columns of W as four conflict-free 16-byte loads and does 64 FFMA (16 FFMA per shared load);
- the next K tile's global loads are issued before the current tile's FFMAs, with one barrier
  per K tile; rows / columns past M / N wrap onto valid ones for the loads (masked at the store),
  K past its end reads zeros;
- every product and sum is one fp32 FFMA, summed in k order: exact fp32 arithmetic, as "ieee".
Measured on an H100 (tools/fma_gemm_probe.py, 2026-11-28): 128x128x8 ran 0.85-1.04x cuBLAS at
batch 32 and 0.89-0.92x at batch 256, 1.8-2.0x vitbench's Triton kernel, with the same error
against float64 as cuBLAS.

Epilogues: "none", "gelu" (exact erf GELU), "residual" (+ residual; the output may be the residual
itself, same view: each element is read and then written by the same thread).
Eligibility (`fma_eligible`): CUDA (not the interpreter: Gluon has none), fp32 operands, 2-D rows
(3-D ones that flatten without a copy) with unit column stride, bias contiguous.
`vitbench.kernels.matmul` times it against the pointer kernel per shape for fp32 "ieee" calls
unless VITBENCH_FMA=0. On an H200 (2026-11-28) it made the ViT-B/16 fp32 "ieee" forward 1.07x
(batch 1) to 1.56x (batch 256) faster than the pointer kernel alone. Unless VITBENCH_FMA_SPLIT_K=0
its split-K is timed too (kernels/matmul_fma_splitk.py: the same tile loop, `_fma_tile`, over
shares of K, for shapes of few output tiles; `_fma_gemm_kernel` builds to the same SASS as before
that loop became a function, offline sm_90 with triton 3.6 and 3.9).
"""

from __future__ import annotations

import torch
import triton

from vitbench._backend import INTERPRETER
from vitbench.kernels._common import gemm_operands_ok
from vitbench.kernels._env import env_flag

try:  # Gluon ships with triton >= 3.5; without it this kernel is simply never eligible
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl

    from triton.experimental.gluon.language._core import shared_memory_descriptor

    # Gluon's API moved between releases (3.6 on the lent H100s, 3.9 in CI): the CTA-wide barrier
    # is gl.thread_barrier in 3.6, gl.barrier later; a shared buffer's reinterpretation is
    # ._reinterpret in 3.6, .reinterpret later.
    _barrier = getattr(gl, "barrier", None) or gl.thread_barrier
    _NEW_REINTERPRET = hasattr(shared_memory_descriptor, "reinterpret")
    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installed triton
    AVAILABLE = False

EPILOGUES = {"none": 0, "gelu": 1, "residual": 2}  # EPILOGUE values
# (BLOCK_M, BLOCK_N, BLOCK_K, SPT_M, SPT_N, TPW_M, WPC_M, num_warps, maxnreg): the accumulator
# layout is BlockedLayout([SPT_M, SPT_N], [TPW_M, 32 // TPW_M], [WPC_M, num_warps // WPC_M]),
# repeated over the tile. 128x128x8 takes 127 registers without epilogue, 149 with the residual
# and 156 with GELU (offline sm_90 build): one program per SM. Capped at 128 (two per SM), ptxas
# spills 72 / 44 bytes, all of it outside the K loop. Measured on an H200 (tools/fma_gemm_probe.py,
# 2026-11-28, ViT-B/16 GEMMs at batch 32 and 256): the capped 128x128x8 was fastest or tied on
# every GEMM at batch 256 (with an epilogue 11-18% faster than uncapped, without one equal) and
# on FC1 + GELU at batch 32; 64x128x16 fastest on the two N = 768 GEMMs (+ residual) at batch 32,
# 128x64x16 within 2% of it; BLOCK_K 16 at 128x128 was 20-25% slower everywhere (H100 and H200).
# A second H200 probe: 64x64x8 on 2 warps (six programs per SM, 145-154 registers) fastest on
# those two at batch 32 (0.93-0.96x cuBLAS, 4% faster than 64x128x16), 0.79-0.86x at batch 256.
CONFIGS = (
    (128, 128, 8, 4, 4, 4, 4, 8, 128),
    (128, 128, 8, 4, 4, 4, 4, 8, None),
    (64, 128, 16, 4, 4, 4, 2, 4, None),
    (128, 64, 16, 4, 4, 4, 4, 4, None),
    (64, 64, 8, 4, 4, 4, 2, 2, None),
)
GROUP_M = 8
# the configs vitbench.kernels.matmul times per shape, by the name its choice is recorded under
CANDIDATES = {f"fma-{c[0]}x{c[1]}x{c[2]}-w{c[7]}" + (f"-r{c[8]}" if c[8] else ""): c for c in CONFIGS}
FMA_ENV = "VITBENCH_FMA"
KERNEL_NAME = "_fma_gemm_kernel"  # what matmul_fma launches, as profilers show it


def fma_setting() -> bool:
    """VITBENCH_FMA, the switch of both CUDA-core Gluon kernels: 1 (the default) lets exact fp32
    GEMMs time this kernel against the pointer kernel, and exact fp32 attention() calls time
    kernels/attention_fma.py's configs against its Triton kernel; 0 leaves both out."""
    return env_flag(FMA_ENV, "time the CUDA-core Gluon GEMM and attention for exact fp32", default=True)


if AVAILABLE:

    if _NEW_REINTERPRET:
        @gluon.jit
        def _rows(buf):  # a [R, C] buffer seen as R rank-1 rows of C: .index(r) is row r
            return buf.reinterpret(gl.float32, buf.shape, gl.SwizzledSharedLayout(1, 1, 1, [0]))
    else:
        @gluon.jit
        def _rows(buf):
            return buf._reinterpret(gl.float32, buf.shape, gl.SwizzledSharedLayout(1, 1, 1, [0]))

    @gluon.jit
    def _k_step(acc, a_cur, w_cur, a_nxt, w_nxt, a_ptrs, w_ptrs, offs_ka, offs_kw, k_left,
                BLOCK_K: gl.constexpr):
        # One K tile: the next tile's global loads into registers (zeros at k >= k_left), the
        # current tile's outer products from shared memory, then the next tile stored transposed
        # into the other buffers, and one barrier.
        acc_l: gl.constexpr = acc.type.layout
        a_reg = gl.load(a_ptrs, mask=gl.expand_dims(offs_ka, 0) < k_left, other=0.0)
        w_reg = gl.load(w_ptrs, mask=gl.expand_dims(offs_kw, 0) < k_left, other=0.0)
        # the [BLOCK_K, rows] tiles seen as BLOCK_K rank-1 rows: .index(k) is row k
        a_rows = _rows(a_cur)
        w_rows = _rows(w_cur)
        for k in gl.static_range(BLOCK_K):
            a_col = a_rows.index(k).load(gl.SliceLayout(1, acc_l))
            w_row = w_rows.index(k).load(gl.SliceLayout(0, acc_l))
            acc = gl.fma(gl.expand_dims(a_col, 1), gl.expand_dims(w_row, 0), acc)
        a_nxt.store(gl.permute(a_reg, [1, 0]))
        w_nxt.store(gl.permute(w_reg, [1, 0]))
        _barrier()
        return acc

    @gluon.jit
    def _fma_tile(a_ptr, w_ptr, M, N, K, stride_am, stride_wn, pid,
                  BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
                  SPT_M: gl.constexpr, SPT_N: gl.constexpr, TPW_M: gl.constexpr,
                  WPC_M: gl.constexpr, GROUP: gl.constexpr, NUM_WARPS: gl.constexpr):
        # Program `pid`'s output tile in grouped order: (fp32 accumulator of A[:, :K] @ W[:, :K]^T
        # over its rows and columns, pid_m, pid_n). A split-K share passes its K range's start
        # in the pointers and its length as K (kernels/matmul_fma_splitk.py).
        acc_l: gl.constexpr = gl.BlockedLayout([SPT_M, SPT_N], [TPW_M, 32 // TPW_M],
                                               [WPC_M, NUM_WARPS // WPC_M], [1, 0])
        # global tile loads [rows, BLOCK_K]: 4 consecutive k (16 bytes) per load; each thread's
        # rows are consecutive (stored transposed, they become 8- or 16-byte shared stores)
        ld_a: gl.constexpr = gl.BlockedLayout([BLOCK_M * BLOCK_K // (128 * NUM_WARPS), 4],
                                              [32 // (BLOCK_K // 4), BLOCK_K // 4], [NUM_WARPS, 1], [1, 0])
        ld_w: gl.constexpr = gl.BlockedLayout([BLOCK_N * BLOCK_K // (128 * NUM_WARPS), 4],
                                              [32 // (BLOCK_K // 4), BLOCK_K // 4], [NUM_WARPS, 1], [1, 0])
        smem_l: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])

        num_pid_m = gl.cdiv(M, BLOCK_M)
        num_pid_n = gl.cdiv(N, BLOCK_N)
        in_group = GROUP * num_pid_n
        first_m = (pid // in_group) * GROUP
        size_m = gl.minimum(num_pid_m - first_m, GROUP)
        pid_m = first_m + (pid % in_group) % size_m
        pid_n = (pid % in_group) // size_m

        rm = (pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld_a))) % M
        rn = (pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, ld_w))) % N
        offs_ka = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, ld_a))
        offs_kw = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, ld_w))
        a_ptrs = a_ptr + gl.expand_dims(rm.to(gl.int64) * stride_am, 1) + gl.expand_dims(offs_ka, 0)
        w_ptrs = w_ptr + gl.expand_dims(rn.to(gl.int64) * stride_wn, 1) + gl.expand_dims(offs_kw, 0)

        # four separate buffers: with one [2, ...] allocation Triton adds a second barrier per tile
        a_s0 = gl.allocate_shared_memory(gl.float32, [BLOCK_K, BLOCK_M], smem_l)
        a_s1 = gl.allocate_shared_memory(gl.float32, [BLOCK_K, BLOCK_M], smem_l)
        w_s0 = gl.allocate_shared_memory(gl.float32, [BLOCK_K, BLOCK_N], smem_l)
        w_s1 = gl.allocate_shared_memory(gl.float32, [BLOCK_K, BLOCK_N], smem_l)
        a_s0.store(gl.permute(gl.load(a_ptrs, mask=gl.expand_dims(offs_ka, 0) < K, other=0.0), [1, 0]))
        w_s0.store(gl.permute(gl.load(w_ptrs, mask=gl.expand_dims(offs_kw, 0) < K, other=0.0), [1, 0]))
        _barrier()

        acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, acc_l)
        # two K tiles per trip (buffers 0 then 1); an odd tile count runs one all-zero tile more
        for k0 in range(0, K, 2 * BLOCK_K):
            a_ptrs += BLOCK_K
            w_ptrs += BLOCK_K
            acc = _k_step(acc, a_s0, w_s0, a_s1, w_s1, a_ptrs, w_ptrs, offs_ka, offs_kw,
                          K - k0 - BLOCK_K, BLOCK_K)
            a_ptrs += BLOCK_K
            w_ptrs += BLOCK_K
            acc = _k_step(acc, a_s1, w_s1, a_s0, w_s0, a_ptrs, w_ptrs, offs_ka, offs_kw,
                          K - k0 - 2 * BLOCK_K, BLOCK_K)
        return acc, pid_m, pid_n

    @gluon.jit
    def _fma_gemm_kernel(a_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, M, N, K,
                         stride_am, stride_wn, stride_rm, stride_om,
                         HAS_BIAS: gl.constexpr, EPILOGUE: gl.constexpr,
                         BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
                         SPT_M: gl.constexpr, SPT_N: gl.constexpr, TPW_M: gl.constexpr,
                         WPC_M: gl.constexpr, GROUP: gl.constexpr, num_warps: gl.constexpr):
        acc, pid_m, pid_n = _fma_tile(a_ptr, w_ptr, M, N, K, stride_am, stride_wn, gl.program_id(0),
                                      BLOCK_M, BLOCK_N, BLOCK_K, SPT_M, SPT_N, TPW_M, WPC_M, GROUP,
                                      num_warps)
        acc_l: gl.constexpr = acc.type.layout
        om = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, acc_l))
        on = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, acc_l))
        mask = (gl.expand_dims(om, 1) < M) & (gl.expand_dims(on, 0) < N)
        if HAS_BIAS:
            acc = acc + gl.expand_dims(gl.load(bias_ptr + on, mask=on < N, other=0.0), 0)
        if EPILOGUE == 1:  # exact GELU
            acc = 0.5 * acc * (1.0 + gl.erf(acc * 0.7071067811865476))
        if EPILOGUE == 2:  # + residual (read before the same thread stores over it, in place)
            r_ptrs = res_ptr + gl.expand_dims(om.to(gl.int64) * stride_rm, 1) + gl.expand_dims(on, 0)
            acc = acc + gl.load(r_ptrs, mask=mask, other=0.0)
        o_ptrs = out_ptr + gl.expand_dims(om.to(gl.int64) * stride_om, 1) + gl.expand_dims(on, 0)
        gl.store(o_ptrs, acc, mask=mask)


def _rows2d(t: torch.Tensor) -> torch.Tensor | None:
    """t as a 2-D [rows, cols] view with unit column stride, without a copy, else None. A 3-D
    [B, 1, D] view (the CLS rows of [B, T, D] hidden states) is its [B, D] rows."""
    if t.dim() == 3:
        if t.shape[1] == 1:
            t = t[:, 0]
        elif t.shape[0] > 1 and t.stride(0) != t.shape[1] * t.stride(1):
            return None
        else:
            t = t.reshape(-1, t.shape[-1])  # a view, given the stride check
    if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1):
        return None
    return t


def fma_eligible(a: object, w: object, bias: object = None, *, epilogue: str = "none",
                 residual: object = None, out: object = None) -> bool:
    """Whether this kernel can take the call (see the module docstring)."""
    if not AVAILABLE or INTERPRETER or epilogue not in EPILOGUES:
        return False
    tensors = [t for t in (a, w, bias, residual, out) if t is not None]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if not (a.is_cuda and all(t.dtype == torch.float32 and t.device == a.device for t in tensors)):
        return False
    if not gemm_operands_ok(a, w, bias, residual, out, adds_residual=epilogue == "residual"):
        return False
    return all(t is None or _rows2d(t) is not None for t in (a, w, residual, out))


def matmul_fma(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
               epilogue: str = "none", residual: torch.Tensor | None = None,
               out: torch.Tensor | None = None, config: tuple | None = None) -> torch.Tensor:
    """out = epilogue(a @ w.T + bias) on this kernel; `config` one of CONFIGS (default the first).
    The caller checks `fma_eligible` and the arguments themselves (vitbench.kernels.matmul runs
    its checked_args first: shapes, an `out` that shares no memory with the inputs)."""
    bm, bn, bk, spt_m, spt_n, tpw_m, wpc_m, warps, maxnreg = config or CONFIGS[0]
    if out is None:
        out = torch.empty((*a.shape[:-1], w.shape[0]), dtype=a.dtype, device=a.device)
    a2, w2, o2 = _rows2d(a), _rows2d(w), _rows2d(out)
    r2 = _rows2d(residual) if residual is not None else o2
    M, K = a2.shape
    N = w2.shape[0]
    if M == 0:
        return out
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    _fma_gemm_kernel[grid](
        a2, w2, bias if bias is not None else w2, r2, o2, M, N, K,
        a2.stride(0), w2.stride(0), r2.stride(0), o2.stride(0),
        HAS_BIAS=bias is not None, EPILOGUE=EPILOGUES[epilogue],
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPT_M=spt_m, SPT_N=spt_n, TPW_M=tpw_m, WPC_M=wpc_m,
        GROUP=GROUP_M, num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))
    return out
