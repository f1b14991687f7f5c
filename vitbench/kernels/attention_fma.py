"""Exact fp32 flash attention on the CUDA cores, written in Gluon: out = softmax(scale * q k^T) v.

Why: with exact fp32 ("ieee") dots, vitbench.kernels.attention's Triton kernel runs Triton's own
FMA lowering of tl.dot, 0.49-0.51x torch SDPA fp32 at ViT-B/16 shapes (H 12, T 197, d 64). This
kernel lays the work out by hand (tools/fma_attention_probe.py); measured there on an H200 (triton
3.6, batch 32 and 256): m128n64w8 0.97-0.98x SDPA (1.51 ms at batch 256), m64n32w4v 0.96x,
m64n64w4 0.86-0.88x, each within 3.7e-7 of float64 (rel. Frobenius error).

Kernel: one program per (BLOCK_M query rows, head, batch); it walks the keys in blocks of
BLOCK_N with an online softmax (running row max m and sum l, exp2 with scale*log2(e) folded into
one FFMA per score). Every product and sum of S = Q K^T and O += P V is one fp32 FFMA (in d
order, then in key order): exact fp32 arithmetic, as "ieee"; exp2 is MUFU.EX2.
- S [BLOCK_M, BLOCK_N] and O [BLOCK_M, d] share one BlockedLayout of 4x4 blocks (8 lanes along
  the columns, all warps stacked along the rows): the row max / sum are in-warp shuffles, and
  the row vectors m, l, alpha broadcast over S and O alike.
- Shared memory, single buffers: Q^T [d, BLOCK_M] (stored once), K^T [d, BLOCK_N], V [BLOCK_N, d]
  and P^T [BLOCK_N, BLOCK_M]. Per index (d for S, key for O) a thread reads its rows of Q^T / P^T
  and its columns of K^T / V as 16-byte shared loads, one per 4x4 block.
- Per key block j: S = Q K_j^T, softmax, P^T and V_j stored, K_{j+1}'s global loads issued;
  barrier; O += P V_j; K_{j+1}^T stored; barrier. The global latency hides behind S resp. P V.
  V_j's loads are issued at the top of block j, or (V_AHEAD) one block ahead with K_{j+1}'s.
- Query rows >= T_q load as zeros and are not stored; keys >= T_k load as zeros and their scores
  are set to -inf (so T_q != T_k works: the last layer's CLS row attends over all T_k keys).
  Pointers: any strides with the last dim contiguous (q, k, v as views of a fused QKV buffer; out
  e.g. a [B, T, H, d] buffer permuted); batch, head and row offsets in int64.
- Not padded to 16 like the Triton kernel's ragged ends: at T = 197 with 64-blocks, 256 x 256
  scores per head are computed for 197 x 197.

Eligibility (`fma_attention_eligible`): CUDA (not the interpreter: Gluon has none), fp32, d in
HEAD_DIMS, last dims contiguous, scale > 0 (the row max is taken before scaling). attention()
times this kernel's configs against its Triton kernel per shape for fp32 "ieee" calls unless
VITBENCH_FMA=0 (`route`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import triton

from vitbench._backend import INTERPRETER
from vitbench.kernels import _dispatch
from vitbench.kernels.matmul_fma import AVAILABLE, fma_setting

if AVAILABLE:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl

    # Gluon calls whose names moved between triton releases, resolved once by the FMA GEMM
    from vitbench.kernels.matmul_fma import _barrier, _rows

LOG2E = 1.4426950408889634  # log2(e): softmax(x) = 2^(x*log2e - max) / sum(...)
HEAD_DIMS = (32, 64)  # powers of 2 covering the layout's 32 columns (d = 64 is ViT-B/16's)
# (BLOCK_M, BLOCK_N, num_warps, V_AHEAD, maxnreg), named m{BLOCK_M}n{BLOCK_N}w{num_warps}[v]:
# 4x8 of S and O per thread at d 64 (4x4 of S at BLOCK_N 32: 197 keys in 7 blocks of 32 instead
# of 4 of 64). Offline sm_90 build (tools/fma_attention_probe.py --compile), spill-free at d 64
# and 32 with triton 3.6 and 3.9; at d 64 m128n64w8 127 registers (3.9: 128), m64n32w4v 123 (127),
# m64n64w4 128, m128n64w8v 128 (capped there: V_AHEAD keeps V_{j+1} in registers; two 8-warp
# programs per SM, as the shared memory allows). Dropped after the H200 run: m128n64w4v (8x8 per
# thread, 254 registers), 0.47x SDPA.
CONFIGS = (
    (128, 64, 8, False, None),
    (64, 32, 4, True, None),
    (64, 64, 4, False, None),
    (128, 64, 8, True, 128),
)
# the configs attention() times per shape, by the name its choice is recorded under
CANDIDATES = {f"m{c[0]}n{c[1]}w{c[2]}" + "v" * c[3]: c for c in CONFIGS}
TRITON = "triton"  # the choice's name for vitbench.kernels.attention's Triton kernel
KERNEL_NAME = "_fma_attn_kernel"  # what attention_fma launches, as profilers show it


if AVAILABLE:

    @gluon.jit
    def _load_rows(base, rows, stride, n_rows, cols):
        # a [rows, d] tile of rows `rows` (int64 offsets); rows >= n_rows read as zeros
        return gl.load(base + gl.expand_dims(rows.to(gl.int64) * stride, 1) + cols,
                       mask=gl.expand_dims(rows < n_rows, 1), other=0.0)

    @gluon.jit
    def _fma_attn_kernel(q_ptr, k_ptr, v_ptr, o_ptr, T_q, T_k, qk_scale,
                         stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                         stride_vb, stride_vh, stride_vt, stride_ob, stride_oh, stride_ot,
                         BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                         V_AHEAD: gl.constexpr, num_warps: gl.constexpr):
        acc_l: gl.constexpr = gl.BlockedLayout([4, 4], [4, 8], [num_warps, 1], [1, 0])
        row_l: gl.constexpr = gl.SliceLayout(1, acc_l)  # a vector over rows (m, l, Q^T / P^T reads)
        col_l: gl.constexpr = gl.SliceLayout(0, acc_l)  # a vector over columns (K^T / V reads)
        # global tile loads [rows, d]: 4 consecutive d (16 bytes) per load, each thread's rows
        # consecutive (stored transposed, they become 16-byte shared stores)
        ldq_l: gl.constexpr = gl.BlockedLayout([BLOCK_M * HEAD_D // (128 * num_warps), 4],
                                               [32 // (HEAD_D // 4), HEAD_D // 4], [num_warps, 1], [1, 0])
        ldk_l: gl.constexpr = gl.BlockedLayout([BLOCK_N * HEAD_D // (128 * num_warps), 4],
                                               [32 // (HEAD_D // 4), HEAD_D // 4], [num_warps, 1], [1, 0])
        smem_l: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])

        pid_m = gl.program_id(0)  # query block: fastest axis, so one head's programs share k, v in L2
        pid_h = gl.program_id(1).to(gl.int64)
        pid_b = gl.program_id(2).to(gl.int64)
        q_base = q_ptr + pid_b * stride_qb + pid_h * stride_qh
        k_base = k_ptr + pid_b * stride_kb + pid_h * stride_kh
        v_base = v_ptr + pid_b * stride_vb + pid_h * stride_vh
        o_base = o_ptr + pid_b * stride_ob + pid_h * stride_oh

        dq = gl.expand_dims(gl.arange(0, HEAD_D, layout=gl.SliceLayout(0, ldq_l)), 0)
        dk = gl.expand_dims(gl.arange(0, HEAD_D, layout=gl.SliceLayout(0, ldk_l)), 0)
        rq = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ldq_l))
        rk = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, ldk_l))  # key within a block (loads)
        cn = gl.arange(0, BLOCK_N, layout=col_l)  # key within a block (score columns)

        q_s = gl.allocate_shared_memory(gl.float32, [HEAD_D, BLOCK_M], smem_l)
        k_s = gl.allocate_shared_memory(gl.float32, [HEAD_D, BLOCK_N], smem_l)
        v_s = gl.allocate_shared_memory(gl.float32, [BLOCK_N, HEAD_D], smem_l)
        p_s = gl.allocate_shared_memory(gl.float32, [BLOCK_N, BLOCK_M], smem_l)
        # the same buffers as rank-1 rows: .index(i) is row i (d of Q^T / K^T, key of P^T / V)
        q_rows = _rows(q_s)
        k_rows = _rows(k_s)
        v_rows = _rows(v_s)
        p_rows = _rows(p_s)

        q_s.store(gl.permute(_load_rows(q_base, rq, stride_qt, T_q, dq), [1, 0]))
        k_s.store(gl.permute(_load_rows(k_base, rk, stride_kt, T_k, dk), [1, 0]))
        _barrier()

        m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, row_l)
        l_i = gl.zeros([BLOCK_M], gl.float32, row_l)
        acc = gl.zeros([BLOCK_M, HEAD_D], gl.float32, acc_l)
        if V_AHEAD:
            v_tile = _load_rows(v_base, rk, stride_vt, T_k, dk)
        for n0 in range(0, T_k, BLOCK_N):  # every block holds >= 1 real key: the row max is finite
            kv = n0 + rk
            if not V_AHEAD:  # V_j's loads now (ptxas may sink them past S); else one block ahead
                v_tile = _load_rows(v_base, kv, stride_vt, T_k, dk)
            s = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, acc_l)
            for i in gl.static_range(HEAD_D):
                qc = q_rows.index(i).load(row_l)
                kr = k_rows.index(i).load(col_l)
                s = gl.fma(gl.expand_dims(qc, 1), gl.expand_dims(kr, 0), s)
            # -inf BEFORE the max: missing keys get weight exp2(-inf) = 0 and never set the max.
            # The max of s * qk_scale is taken as max(s) * qk_scale: right for qk_scale > 0 only.
            s = gl.where(gl.expand_dims(n0 + cn < T_k, 0), s, float("-inf"))
            m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
            alpha = gl.exp2(m_i - m_new)  # rescales the old sums; 0 on the first block (m_i = -inf)
            # one FFMA + EX2 per score (an explicit fma: not left to the compiler's FP fusion,
            # whose default triton 3.9 says will change)
            p = gl.exp2(gl.fma(s, gl.full_like(s, qk_scale), -gl.expand_dims(m_new, 1)))
            l_i = l_i * alpha + gl.sum(p, axis=1)
            acc = acc * gl.expand_dims(alpha, 1)
            m_i = m_new
            p_s.store(gl.permute(p, [1, 0]))
            v_s.store(v_tile)
            kn = kv + BLOCK_N
            k_tile = _load_rows(k_base, kn, stride_kt, T_k, dk)
            if V_AHEAD:
                v_tile = _load_rows(v_base, kn, stride_vt, T_k, dk)
            _barrier()  # P^T, V_j visible; every thread is past its K_j reads
            for j in gl.static_range(BLOCK_N):
                pc = p_rows.index(j).load(row_l)
                vr = v_rows.index(j).load(col_l)
                acc = gl.fma(gl.expand_dims(pc, 1), gl.expand_dims(vr, 0), acc)
            k_s.store(gl.permute(k_tile, [1, 0]))
            _barrier()  # K_{j+1}^T visible; every thread is past its P^T, V_j reads

        # l_i >= 1 for every row (the max key contributes about exp2(0) = 1): no division by 0
        acc = acc / gl.expand_dims(l_i, 1)
        ro = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=row_l)
        co = gl.arange(0, HEAD_D, layout=col_l)
        o_ptrs = o_base + gl.expand_dims(ro.to(gl.int64) * stride_ot, 1) + gl.expand_dims(co, 0)
        gl.store(o_ptrs, acc, mask=gl.expand_dims(ro < T_q, 1))


def fma_attention_eligible(q: object, k: object, v: object, out: object = None, *,
                           scale: float | None = None) -> bool:
    """Whether this kernel can take the call (see the module docstring); `scale` None is the
    default 1/sqrt(d)."""
    return AVAILABLE and not INTERPRETER and _operands_ok(q, k, v, out, scale) and q.is_cuda


def _operands_ok(q: object, k: object, v: object, out: object, scale: float | None) -> bool:
    """The eligibility rules on the arguments themselves, whatever their device: fp32 [B, H, T, d]
    tensors on one device, d in HEAD_DIMS, k and v alike with T_k >= 1, out like q, last dims
    contiguous, B and H within the grid's limit, scale finite and > 0."""
    tensors = [t for t in (q, k, v, out) if t is not None]
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in tensors):
        return False
    if not all(t.dtype == torch.float32 and t.device == q.device for t in tensors):
        return False
    B, H, _, d = q.shape
    if d not in HEAD_DIMS or k.shape != v.shape or (k.shape[0], k.shape[1], k.shape[3]) != (B, H, d):
        return False
    if (out is not None and out.shape != q.shape) or k.shape[2] == 0 or max(B, H) > 65535:
        return False  # no keys: no softmax; B, H: grid axes 2 and 1 (CUDA's limit)
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        return False
    return all(t.stride(3) == 1 for t in tensors)


def attention_fma(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                  out: torch.Tensor | None = None, config: tuple | None = None) -> torch.Tensor:
    """softmax(scale * q k^T) v on this kernel: q [B, H, T_q, d], k, v [B, H, T_k, d], out like q;
    `config` one of CONFIGS (default the first), `scale` default 1/sqrt(d). The caller checks
    `fma_attention_eligible` and the arguments themselves (attention() first runs its checks:
    shapes, an `out` that shares no memory with k, v, and is never q itself here)."""
    bm, bn, warps, v_ahead, maxnreg = config or CONFIGS[0]
    B, H, T_q, d = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    if out is None:
        out = torch.empty((B, H, T_q, d), dtype=q.dtype, device=q.device)
    if out.numel() == 0:
        return out
    _fma_attn_kernel[(triton.cdiv(T_q, bm), H, B)](
        q, k, v, out, T_q, k.shape[2], float(scale) * LOG2E,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
        BLOCK_M=bm, BLOCK_N=bn, HEAD_D=d, V_AHEAD=v_ahead, num_warps=warps,
        **({"maxnreg": maxnreg} if maxnreg else {}))
    return out


def _choice_key(q, k, v, out, scale: float) -> tuple:
    """The per-shape choice's cache key, laid out as a GEMM's (kernel_choices() in
    vitbench.bench.metadata reads op, shape, -, n, dtype, epilogue, bias, in place): q's shape,
    T_k as n, the scale in the epilogue's place; then every tensor's strides."""
    return ("attention_fma", tuple(q.shape), q.stride(), k.shape[2], q.dtype, f"scale={scale!r}",
            False, False, q.device, k.stride(), v.stride(), out.stride())


def route(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, *, scale: float,
          precision: str, triton_attention: Callable[[torch.Tensor], object]) -> str:
    """Which kernel an attention() call runs on: TRITON, or a config name of CANDIDATES where this
    is an exact fp32 call (precision "ieee") on a GPU, VITBENCH_FMA allows it, the kernel can take
    it and it timed fastest for this key (_dispatch: once per key, against
    `triton_attention(dst)`, the Triton kernel writing dst). Arguments as attention() checked
    them; `out` is never q itself. Timing writes a scratch output, never `out`. Inside a CUDA
    graph capture nothing is timed: the cached choice, else TRITON (uncached)."""
    if precision != "ieee" or q.dtype != torch.float32 or INTERPRETER:
        return TRITON
    if not fma_setting() or not fma_attention_eligible(q, k, v, out, scale=scale):
        return TRITON  # a bad VITBENCH_FMA raises here, before any timing
    key = _choice_key(q, k, v, out, scale)
    hit = _dispatch.lookup(key)
    if hit is not None:
        return hit
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return TRITON  # nothing can be timed inside a graph capture
    scratch = torch.empty_like(out)  # out's strides where it is dense (a permuted buffer too)
    candidates = {TRITON: lambda: triton_attention(scratch)}
    for name, cfg in CANDIDATES.items():
        candidates[name] = (lambda cfg=cfg: attention_fma(q, k, v, scale=scale, out=scratch, config=cfg))
    return _dispatch.fastest(key, candidates)
