"""Fused multi-head attention: out = softmax(scale * q k^T) v, flash-attention style.

One program owns BLOCK_M query rows of one (batch, head) (a ragged-end program: 16 rows, see Grid).
It keeps those rows of q in registers, walks the keys in blocks of BLOCK_N (then the ragged keys in
steps of 16) and keeps an online softmax: a running row max `m`, a running row sum `l` and an fp32
accumulator `acc` [rows, d], rescaled by exp2(m_old - m_new) whenever the max grows. The T x T
score matrix never leaves registers.

Per (batch, head), with T_q query rows, T_k keys and head dim d:
  FLOPs: 2*T_q*T_k*d (q k^T) + 2*T_q*T_k*d (p v)            = 4*T_q*T_k*d
  bytes: read q, k, v once from HBM, write out once          = (2*T_q + 2*T_k)*d*itemsize
(k/v blocks are re-read by every query block of the head, but those re-reads hit L2: the grid's
fastest axis is the query block, so the programs sharing one head's k/v run side by side.)
Grid: (query blocks, H, B), B*H split over two axes so that neither passes CUDA's 65535 limit on
grid axes 1 and 2. Ragged ends are not padded to a full block: the T_q % BLOCK_M query rows left
after the full blocks go to 16-row programs and the T_k % BLOCK_N keys left to 16-key steps
(tl.dot's smallest shapes). At ViT-B/16's T = 197 with 64 x 64 blocks that is 208 x 208 scores
computed per head instead of 256 x 256 (the exps and both dots scale with it).
VITBENCH_ATTN_TAIL=0 pads them to full blocks instead, for A/B runs.

Layout: q, k, v and out are [B, H, T, d] tensors with ANY strides whose last dim is contiguous,
e.g. views of one fused QKV projection buffer `qkv.view(B, T, 3, H, d).permute(2, 0, 3, 1, 4)`
(strides (T*3*H*d, d, 3*H*d, 1)); `out` may be a [B, T, H, d] buffer permuted to [B, H, T, d] so
the output projection reads it as a plain [B*T, H*d] matrix.

Precision: dots accumulate in fp32. fp16/bf16 inputs feed the tensor cores directly (p is rounded
to the input dtype before p v, as every flash kernel does). fp32 inputs use exact "ieee" dots by
default on the GPU too (slow, no tensor cores); `precision="tf32"` opts in to tf32, with q, k,
p and v rounded to the nearest TF32 value before their dots (`_tiles.round_tf32`, as cuBLAS rounds
its operands; the tensor core alone would truncate them, doubling the error); the split modes
(`precision="bf16x6"`, "tf32x3", "bf16x3": _common.PRECISIONS) run on the tensor cores too.
Exact fp32 ("ieee") calls on a GPU with d 32 or 64 are timed once per shape against the CUDA-core
Gluon kernel's configs (kernels/attention_fma.py: about 2x this kernel's speed at ViT-B/16 shapes
on an H200) and run on the fastest; VITBENCH_FMA=0 leaves them out.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from vitbench.errors import VitbenchError
from vitbench.kernels import attention_fma
from vitbench.kernels._common import (
    autotune, check_int32_offsets, check_out, check_precision, check_same_dtype, check_tensor,
    overlaps,
)
from vitbench.kernels._env import env_flag
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import tf32_operand, tf32_rounded

LOG2E = 1.4426950408889634  # log2(e): softmax(x) = 2^(x*log2e - max) / sum(...)
MAX_HEAD_DIM = 256  # d is padded to a power of 2 >= 16 in registers; beyond 256 it would spill

_CONFIGS = [
    # First: small blocks, the config the interpreter runs (fast on CPU, and exercises several
    # key blocks + a ragged tail even at T=50).
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 16}, num_warps=4, num_stages=1),
    # H100 candidates. ViT-B/16 (T=197, d=64): 5 rows and 5 keys past the last full block of 64
    # (69 past 128), done in 16-row programs and 16-key steps (TAIL).
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=2),
]
# Ragged ends (T % BLOCK_M query rows, T % BLOCK_N keys) are done in steps of 16, tl.dot's
# smallest M, N and K, rather than in one more full block: every config's blocks are >= 16.
TAIL = 16
ATTN_TAIL_ENV = "VITBENCH_ATTN_TAIL"  # 0: one more full block for each ragged end (A/B runs)


def attn_tail_setting() -> bool:
    """VITBENCH_ATTN_TAIL as a bool: "0" -> False; unset, "" or "1" -> True; else VitbenchError."""
    return env_flag(ATTN_TAIL_ENV, "16-row / 16-key steps for the ragged ends", default=True)


SMEM_BUDGET = 200 * 1024  # bytes; an H100 SM has 228 KiB of shared memory


def _prune_configs(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Skip configs that cannot fit or would only burn autotuning time (GPU only).

    - k/v staging buffers: num_stages * 2 * BLOCK_N * BLOCK_D * itemsize (+ q) beyond the
      shared-memory budget would fail to launch anyway; dropping them saves their compile.
    - exact fp32 ("ieee") dots run on CUDA cores (FMA), where big tiles only add registers and
      minutes of compile: keep tiles of at most 64 x 64.
    """
    item = named_args["q_ptr"].element_size()
    d = kwargs["BLOCK_D"]
    fma = kwargs["DOT_PRECISION"] == "ieee" and named_args["q_ptr"].dtype == torch.float32
    kept = []
    for c in configs:
        bm, bn, stages = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], max(c.num_stages, 1)
        smem = (stages * 2 * bn + bm) * d * item
        if smem > SMEM_BUDGET or (fma and (bm > 64 or bn > 64)):
            continue
        kept.append(c)
    return kept or configs[:1]


@triton.jit
def _load_tile(ptrs, rows_ok, cols_ok, MASK_ROWS: tl.constexpr, MASK_COLS: tl.constexpr):
    """Load a [rows, cols] tile; masked-out elements read as 0 (so they add nothing to a dot)."""
    if MASK_ROWS and MASK_COLS:
        tile = tl.load(ptrs, mask=rows_ok[:, None] & cols_ok[None, :], other=0.0)
    elif MASK_ROWS:
        tile = tl.load(ptrs, mask=rows_ok[:, None], other=0.0)
    elif MASK_COLS:
        tile = tl.load(ptrs, mask=cols_ok[None, :], other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def _attend_block(
    acc,  # [rows, BLOCK_D] fp32 running sum of p v (not yet divided by l)
    l_i,  # [rows] fp32 running softmax denominator
    m_i,  # [rows] fp32 running row max of the scores, in log2 units
    q,  # [rows, BLOCK_D] this program's query rows (input dtype); rows = BLOCK_M or TAIL_M
    k_ptrs,  # [keys, BLOCK_D] pointers to this key block; keys = BLOCK_N or TAIL_N
    v_ptrs,  # [keys, BLOCK_D] pointers to this value block
    n_ok,  # [keys] which keys of the block exist (used only if MASK_N)
    d_ok,  # [BLOCK_D] which head-dim columns exist (used only if MASK_D)
    qk_scale,  # scale * log2(e): scores come out in log2 units, so exp2 replaces exp
    MASK_N: tl.constexpr,  # a ragged-key step: mask keys >= T_k
    MASK_D: tl.constexpr,  # head dim padded to BLOCK_D: mask columns >= d
    DOT_PRECISION: tl.constexpr,  # _common.PRECISIONS ("ieee" exact fp32, "tf32", "bf16x6", ...); no effect on fp16/bf16
):
    # read k, v blocks: 2*BLOCK_N*d*itemsize bytes (from L2 after the head's first query block)
    k = _load_tile(k_ptrs, n_ok, d_ok, MASK_N, MASK_D)
    k = tf32_operand(k, DOT_PRECISION)  # fp32 "tf32": round to nearest TF32 (q already is)
    # s = q k^T: 2*BLOCK_M*BLOCK_N*d FLOPs
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
    if MASK_N:
        # -inf BEFORE the max: missing keys get weight exp2(-inf) = 0 and never set the max
        s = tl.where(n_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every block holds >= 1 real key
    alpha = tl.math.exp2(m_i - m_new)  # rescales the old sums; exp2(-inf) = 0 on the 1st block
    p = tl.math.exp2(s - m_new[:, None])  # [BLOCK_M, BLOCK_N] in [0, 1]
    l_i = l_i * alpha + tl.sum(p, 1)
    v = _load_tile(v_ptrs, n_ok, d_ok, MASK_N, MASK_D)  # masked rows are 0, never NaN garbage
    v = tf32_operand(v, DOT_PRECISION)  # fp32 "tf32": round to nearest TF32
    # acc = acc * alpha + p v: 2*BLOCK_M*BLOCK_N*d FLOPs
    acc = acc * alpha[:, None]
    # fp32 "tf32": p (computed here in fp32) rounded to nearest TF32 too, as cuBLAS would
    p = tf32_operand(p.to(v.dtype), DOT_PRECISION)
    acc = tl.dot(p, v, acc, input_precision=DOT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def _attend_rows(
    q_base, k_base, v_base, o_base,  # this (batch, head)'s q, k, v, out
    row0,  # first query row of this program
    stride_qt, stride_qd, stride_kt, stride_kd, stride_vt, stride_vd, stride_ot, stride_od,
    T_q, T_k, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ROWS: tl.constexpr,  # query rows of this program: BLOCK_M, or TAIL_M for the ragged end
    MASK_M: tl.constexpr,  # rows past T_q exist in this block (the ragged end only)
    BLOCK_N: tl.constexpr,  # keys per step of the main loop
    TAIL_N: tl.constexpr,  # keys per step over the T_k % BLOCK_N ragged keys
    TF32_OUT: tl.constexpr,  # fp32 out stored rounded to TF32 (_tiles.tf32_rounded)
):
    MASK_D: tl.constexpr = BLOCK_D != HEAD_DIM
    offs_m = row0 + tl.arange(0, ROWS)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < T_q
    d_ok = offs_d < HEAD_DIM

    # read q block once: ROWS*d*itemsize bytes; padded rows/cols read as 0
    q_ptrs = q_base + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd
    q = _load_tile(q_ptrs, m_ok, d_ok, MASK_M, MASK_D)
    q = tf32_operand(q, DOT_PRECISION)  # fp32 "tf32": round to nearest TF32 once, reused per block

    m_i = tl.full([ROWS], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([ROWS], dtype=tl.float32)
    acc = tl.zeros([ROWS, BLOCK_D], dtype=tl.float32)

    # full key blocks: no key mask, so the loop body is branch-free and pipelines (num_stages).
    # int32 offsets within the head, not [BLOCK_N, BLOCK_D] pointer tensors carried through the
    # loop: 64-bit pointers per element cost two registers each and made the kernel spill
    offs_n = tl.arange(0, BLOCK_N)
    k_offs = offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd
    v_offs = offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd
    n_full = (T_k // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        acc, l_i, m_i = _attend_block(
            acc, l_i, m_i, q, k_base + start_n * stride_kt + k_offs, v_base + start_n * stride_vt + v_offs,
            offs_n, d_ok, qk_scale, False, MASK_D, DOT_PRECISION,
        )
    # ragged keys (T_k % BLOCK_N) in TAIL_N-wide steps, the missing ones masked: at T = 197 and
    # BLOCK_N = 64 one step of 16 keys (11 masked) instead of a block of 64 (59 masked)
    offs_t = tl.arange(0, TAIL_N)
    kt_offs = offs_t[:, None] * stride_kt + offs_d[None, :] * stride_kd
    vt_offs = offs_t[:, None] * stride_vt + offs_d[None, :] * stride_vd
    if TAIL_N == BLOCK_N:  # at most one step: an `if`, not a loop (fewer registers)
        if n_full < T_k:
            acc, l_i, m_i = _attend_block(
                acc, l_i, m_i, q, k_base + n_full * stride_kt + kt_offs, v_base + n_full * stride_vt + vt_offs,
                n_full + offs_t < T_k, d_ok, qk_scale, True, MASK_D, DOT_PRECISION,
            )
    else:
        for start_n in range(n_full, T_k, TAIL_N):
            acc, l_i, m_i = _attend_block(
                acc, l_i, m_i, q, k_base + start_n * stride_kt + kt_offs, v_base + start_n * stride_vt + vt_offs,
                start_n + offs_t < T_k, d_ok, qk_scale, True, MASK_D, DOT_PRECISION,
            )

    # l_i >= 1 for every row (the max key contributes exp2(0) = 1): no division by 0
    out = acc / l_i[:, None]
    # write out: ROWS*d*itemsize bytes, only real rows and columns
    o_ptrs = o_base + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od
    val = tf32_rounded(out.to(o_base.dtype.element_ty), TF32_OUT)
    if MASK_M or MASK_D:
        tl.store(o_ptrs, val, mask=m_ok[:, None] & d_ok[None, :])
    else:
        tl.store(o_ptrs, val)


@autotune(
    configs=_CONFIGS,
    key=["T_q", "T_k", "HEAD_DIM", "DOT_PRECISION", "TAIL_M"],  # TAIL_M: VITBENCH_ATTN_TAIL
    prune_configs_by={"early_config_prune": _prune_configs},
)
@triton.jit
def _attention_kernel(
    q_ptr,  # [B, H, T_q, d] queries, any strides, last one 1
    k_ptr,  # [B, H, T_k, d] keys
    v_ptr,  # [B, H, T_k, d] values
    o_ptr,  # [B, H, T_q, d] output (written once, rows < T_q, cols < d)
    stride_qb, stride_qh, stride_qt, stride_qd,  # q strides in elements
    stride_kb, stride_kh, stride_kt, stride_kd,  # k strides
    stride_vb, stride_vh, stride_vt, stride_vd,  # v strides
    stride_ob, stride_oh, stride_ot, stride_od,  # out strides
    T_q,  # number of query rows
    T_k,  # number of keys (= value rows)
    qk_scale,  # fp32 scale * log2(e), folded into the scores
    HEAD_DIM: tl.constexpr,  # d, the real head dim
    BLOCK_D: tl.constexpr,  # d padded to a power of 2 (>= 16, tl.dot's minimum)
    DOT_PRECISION: tl.constexpr,  # _common.PRECISIONS (fp32 inputs only)
    TAIL_M: tl.constexpr,  # query rows of a ragged-end program (<= BLOCK_M; 0: BLOCK_M)
    TAIL_N: tl.constexpr,  # keys per step over the ragged keys (<= BLOCK_N; 0: BLOCK_N)
    BLOCK_M: tl.constexpr,  # query rows per program (autotuned)
    BLOCK_N: tl.constexpr,  # keys per inner step (autotuned)
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
    TF32_OUT: tl.constexpr = False,  # fp32 out stored rounded to TF32 (_tiles.tf32_rounded)
):
    pdl_start(PDL)
    pid_m = tl.program_id(0)  # query block: fastest axis, so one head's blocks share k/v in L2
    pid_h = tl.program_id(1)  # head
    pid_b = tl.program_id(2).to(tl.int64)  # batch (int64: B * stride_b may pass 2^31)
    q_base = q_ptr + pid_b * stride_qb + pid_h * stride_qh
    k_base = k_ptr + pid_b * stride_kb + pid_h * stride_kh
    v_base = v_ptr + pid_b * stride_vb + pid_h * stride_vh
    o_base = o_ptr + pid_b * stride_ob + pid_h * stride_oh
    # Programs 0 .. n_full_m-1 own BLOCK_M rows each, unmasked; the T_q % BLOCK_M rows left go
    # to programs of TAIL_M rows (grid: _grid_m). At T = 197 and BLOCK_M = 64: 3 blocks of 64 and
    # one of 16 rows (5 real) instead of a 4th block of 64 (59 padded rows of q k^T and p v).
    KEYS_T: tl.constexpr = BLOCK_N if TAIL_N == 0 else TAIL_N
    if TAIL_M == 0:  # (VITBENCH_ATTN_TAIL=0) every program BLOCK_M rows, the last one masked
        _attend_rows(
            q_base, k_base, v_base, o_base, pid_m * BLOCK_M,
            stride_qt, stride_qd, stride_kt, stride_kd, stride_vt, stride_vd, stride_ot, stride_od,
            T_q, T_k, qk_scale, HEAD_DIM, BLOCK_D, DOT_PRECISION, BLOCK_M, True, BLOCK_N, KEYS_T, TF32_OUT,
        )
    else:
        n_full_m = T_q // BLOCK_M
        if pid_m < n_full_m:
            _attend_rows(
                q_base, k_base, v_base, o_base, pid_m * BLOCK_M,
                stride_qt, stride_qd, stride_kt, stride_kd, stride_vt, stride_vd, stride_ot, stride_od,
                T_q, T_k, qk_scale, HEAD_DIM, BLOCK_D, DOT_PRECISION, BLOCK_M, False, BLOCK_N, KEYS_T, TF32_OUT,
            )
        else:
            _attend_rows(
                q_base, k_base, v_base, o_base, n_full_m * BLOCK_M + (pid_m - n_full_m) * TAIL_M,
                stride_qt, stride_qd, stride_kt, stride_kd, stride_vt, stride_vd, stride_ot, stride_od,
                T_q, T_k, qk_scale, HEAD_DIM, BLOCK_D, DOT_PRECISION, TAIL_M, True, BLOCK_N, KEYS_T, TF32_OUT,
            )


def _grid_m(T_q: int, block_m: int, tail_m: int) -> int:
    """Programs along the query rows: full BLOCK_M blocks, then TAIL_M-row ones for the rest
    (TAIL_M = 0: BLOCK_M-row ones)."""
    return T_q // block_m + triton.cdiv(T_q % block_m, tail_m or block_m)


def attention_cost(B: int, H: int, T: int, d: int, itemsize: int) -> tuple[int, int]:
    """(FLOPs, HBM bytes) of one self-attention call: q k^T and p v; q, k, v read + out written."""
    flops = 4 * B * H * T * T * d  # 2*T*T*d for q k^T, 2*T*T*d for p v (softmax exps not counted)
    nbytes = 4 * B * H * T * d * itemsize  # q, k, v read once + out written once
    return flops, nbytes


def _check_out(out: object, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # dtype is left to the caller (check_same_dtype, as for the inputs).
    out = check_out(out, q.shape, None, q.device, like="q's")
    # Other programs still read k and v while this one writes: out must not alias them. out may
    # be q itself (the launcher then writes a temporary and copies it back: the autotuner reruns
    # the kernel on the same arguments, which would read an overwritten q), nothing partial.
    # Checked by address span, so conservative: interleaved-but-disjoint views are refused too.
    same_as_q = out.data_ptr() == q.data_ptr() and out.stride() == q.stride()
    for name, t in (("q", q), ("k", k), ("v", v)):
        if overlaps(out, t) and not (name == "q" and same_as_q):
            raise VitbenchError(f"out overlaps {name} in memory; pass a separate output buffer")
    return out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    precision: str = "ieee",
    tf32_out: bool = False,
) -> torch.Tensor:
    """Fused multi-head attention softmax(scale * q k^T) v for [B, H, T, d] inputs.

    q: [B, H, T_q, d]; k, v: [B, H, T_k, d]; any strides with the last dim contiguous.
    scale defaults to 1/sqrt(d). `out` ([B, H, T_q, d], any strides, last dim contiguous) is
    written in place and returned. `precision` (_common.PRECISIONS: "ieee", "tf32", "bf16x6", ...)
    applies to fp32 inputs only. tf32_out=True stores an fp32 output rounded to the nearest TF32
    value (no effect on 16-bit ones): for a consumer GEMM run with `matmul(..., tf32_exact=True)`.
    """
    q = check_tensor("q", q, ndim=4)
    k = check_tensor("k", k, ndim=4)
    v = check_tensor("v", v, ndim=4)
    dtype = check_same_dtype(q=q, k=k, v=v)
    B, H, T_q, d = q.shape
    for name, t in (("k", k), ("v", v)):
        if (t.shape[0], t.shape[1], t.shape[3]) != (B, H, d):
            raise VitbenchError(
                f"{name} has shape {tuple(t.shape)}; expected [B={B}, H={H}, T, d={d}] to match q "
                f"{tuple(q.shape)}"
            )
    T_k = k.shape[2]
    if v.shape[2] != T_k:
        raise VitbenchError(f"v has {v.shape[2]} rows (T) but k has {T_k}; they must match")
    if not 1 <= d <= MAX_HEAD_DIM:
        raise VitbenchError(f"q has head dim d={d}; supported: 1..{MAX_HEAD_DIM}")
    if T_k == 0 and T_q > 0:
        raise VitbenchError("k has no keys (T_k = 0): softmax over an empty row is undefined")
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise VitbenchError(f"scale must be a number, got {scale!r}") from None
    if not math.isfinite(scale):
        raise VitbenchError(f"scale must be finite, got {scale}")
    dot_precision = check_precision(precision, dtype)

    if B > 65535 or H > 65535:
        raise VitbenchError(f"q has B={B}, H={H}; each must be at most 65535 (CUDA grid limit)")
    if out is None:
        out = torch.empty((B, H, T_q, d), dtype=dtype, device=q.device)
    else:
        out = _check_out(out, q, k, v)
        check_same_dtype(q=q, out=out)
    if out.numel() == 0:
        return out
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        check_int32_offsets(name, t, from_dim=1)  # the batch term is int64 in the kernel
    dst = torch.empty_like(out) if out.data_ptr() == q.data_ptr() else out

    tail = TAIL if attn_tail_setting() else 0  # a bad value: VitbenchError (the CLI checks first)

    def run_triton(o: torch.Tensor) -> None:
        _launch(q, k, v, o, scale, dot_precision, tail, bool(tf32_out))

    # exact fp32 on a GPU: this kernel or the CUDA-core Gluon one, whichever timed faster (the
    # Gluon one does not round its output: tf32_out takes this kernel)
    pick = attention_fma.TRITON if tf32_out else attention_fma.route(
        q, k, v, dst, scale=scale, precision=dot_precision, triton_attention=run_triton)
    if pick == attention_fma.TRITON:
        run_triton(dst)
    else:
        attention_fma.attention_fma(q, k, v, scale=scale, out=dst, config=attention_fma.CANDIDATES[pick])
    if dst is not out:
        out.copy_(dst)
    return out


def _launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float,
            dot_precision: str, tail: int, tf32: bool = False) -> None:
    """The Triton kernel on attention()'s checked arguments (`out` never q itself)."""
    B, H, T_q, d = q.shape
    grid = lambda meta: (_grid_m(T_q, meta["BLOCK_M"], tail), H, B)  # noqa: E731
    _attention_kernel[grid](
        q, k, v, out,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        T_q, k.shape[2], scale * LOG2E,
        HEAD_DIM=d,
        BLOCK_D=max(16, triton.next_power_of_2(d)),
        DOT_PRECISION=dot_precision,
        TAIL_M=tail,
        TAIL_N=tail,
        TF32_OUT=tf32,
        **launch_opts(),
    )
