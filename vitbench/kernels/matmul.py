"""Linear layer GEMM with fused epilogues: out = epilogue(A @ W^T + bias [, residual]).

A is [M, K] (or [B, T, K], rows m = b*T + t), W is [N, K] in `nn.Linear` layout and is read as
the transposed operand through its strides (no copy). Accumulation is fp32 whatever the storage
dtype; the epilogue (bias, GELU, residual) runs on the fp32 accumulator before one rounding.

Cost (itemsize s): FLOPs 2*M*N*K (+ a few per output element for the epilogue);
bytes s*(M*K + N*K + M*N) + s*N with bias + s*M*N with residual (each operand read once from
DRAM; tiles of A and W are re-read from L2, which the grouped tile order keeps warm).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import _common, _rowsplit
from vitbench.kernels._common import PRECISIONS, autotune, check_precision, check_same_dtype, check_tensor
from vitbench.kernels._env import env_flag
from vitbench.kernels._gelu import gelu, gelu_form, gelu_tanh
from vitbench.kernels._lnfold import LNFold, apply_ln_fold, check_ln, check_stats, store_row_stats
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import dot_k_loop, grouped_tile, split_k_reduce, tf32_rounded

EPILOGUES = ("none", "gelu", "gelu_tanh", "residual", "gelu_residual")
_RESIDUAL_EPILOGUES = ("residual", "gelu_residual")
_SMEM_BYTES = 227 * 1024  # H100 max dynamic shared memory per block


def gemm_config(bm: int, bn: int, bk: int, stages: int, warps: int, group: int = 8) -> triton.Config:
    """A GEMM autotune config: tile sizes, GROUP_M (tile order), pipeline stages and warps."""
    return triton.Config(
        {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
        num_stages=stages, num_warps=warps,
    )


def matmul_config(bm: int, bn: int, bk: int, stages: int, warps: int, group: int = 8,
                  split: int = 1) -> triton.Config:
    """gemm_config plus SPLIT_K, this kernel's own: programs per output tile, each summing a share
    of K (see `split_k_reduce`)."""
    c = gemm_config(bm, bn, bk, stages, warps, group)
    c.kwargs["SPLIT_K"] = split
    return c


def _split_k(c: triton.Config) -> int:
    return c.kwargs.get("SPLIT_K", 1)


# Under the interpreter only the first config is used: keep it small (quick on a CPU).
# On a GPU the autotuner times all of them per (M, N, K, epilogue, precision, dtypes); the big
# ones are the Hopper bf16/fp16 configs (wgmma-sized tiles, 3-4 stage cp.async pipelines).
GEMM_CONFIGS = [matmul_config(32, 32, 32, 2, 4)] if INTERPRETER else [
    matmul_config(128, 256, 64, 3, 8),
    matmul_config(256, 128, 64, 3, 8),
    matmul_config(128, 256, 64, 4, 8),
    matmul_config(128, 128, 64, 4, 8),
    matmul_config(128, 128, 64, 3, 4),
    matmul_config(128, 128, 32, 4, 4),
    matmul_config(64, 256, 64, 4, 4),
    matmul_config(128, 64, 64, 4, 4),
    matmul_config(64, 128, 64, 4, 4),
    matmul_config(64, 64, 64, 4, 4),   # small M (batch 1: 197 rows) -> more CTAs
    matmul_config(32, 64, 64, 4, 4),
    matmul_config(64, 32, 64, 4, 4),
]
# Split-K configs: autotuned unless VITBENCH_SPLIT_K=0; forced by tests and tools/epilogue_probe.py.
# Meant for few rows and long K, where one program per output tile leaves SMs idle and each walks
# all of K alone: batch 1's FC2 ([197, 3072] x [3072, 768]) ran 96 programs of 48 K steps each
# and read its 4.7 MB of weights at 0.35 TB/s (H100 profile, 2026-11-27). Autotuned with the
# configs above in one H100 run (commit 379177a, run M4), a split config was picked only for the
# last layer's CLS-row FC2 (1 or 8 rows: 64x64x128, SPLIT_K 4, 8.4 us), never for the 197- and
# 1,576-row GEMMs of batch 1 and 8; every row of that run passed the correctness gate. Autotuned
# from cold-L2 replays (VITBENCH_TUNE_COLD), they win those too: batch-1 FC2 12.9 us with SPLIT_K 4
# against 15.3 us for the best plain config, and the batch-1 forward took 0.524 ms against 0.562
# without split-K and cold tuning, 0.553 with cold tuning alone (H100, f859449, docs/performance.md
# step 7). So both are on by default. The first two came from forcing every candidate at batch 1
# with cold L2 (tools/epilogue_probe.py --kernel pointer --cold --extra-splits, H100, eab4be3):
# FC2 11.1 us (64x32x64) and 11.9 us (64x64x64) against 14.8 us for 64x64x128, the one picked.
SPLIT_K_CONFIGS = [matmul_config(16, 32, 16, 2, 4, split=4)] if INTERPRETER else [
    matmul_config(64, 32, 64, 4, 4, split=4),
    matmul_config(64, 64, 64, 4, 4, split=4),
    matmul_config(64, 64, 128, 4, 4, split=4),
    matmul_config(64, 128, 64, 4, 4, split=4),
    matmul_config(64, 64, 64, 4, 4, split=8),
    matmul_config(128, 64, 64, 4, 4, split=4),
    matmul_config(128, 128, 64, 4, 8, split=2),
    matmul_config(128, 128, 64, 3, 8, split=3),
    matmul_config(256, 64, 64, 3, 8, split=4),
]
# fp32 only (kept by prune_by_smem for 4-byte operands): exact fp32 dots run on the CUDA cores, not
# the tensor cores. Compiled offline for sm_90 (fp32, ieee): the 128-wide configs above that fit
# shared memory at 4 bytes spill registers with 4 warps (248-3452 bytes), only the 64x64 and
# smaller ones do not; these four compile with 232-255 registers and no spill. On the H100
# (2026-11-27) exact-fp32 ViT-B/16 ran 2.09x slower than HF SDPA's cuBLAS SGEMM at batch 32
# without these, 1.82x with them (55.96 vs 30.71 ms, results/h100/ab/).
FP32_CONFIGS = [] if INTERPRETER else [
    matmul_config(128, 128, 16, 3, 8),
    matmul_config(128, 128, 32, 3, 8),
    matmul_config(128, 64, 32, 3, 4),
    matmul_config(64, 128, 32, 3, 4),
]
# fp32 with a tensor-core split precision ("tf32x3", "bf16x3", "bf16x6": _common.PRECISIONS) only,
# beside FP32_CONFIGS: the split copies of each operand are made in registers every K step, so
# large tiles need 8 warps. Compiled offline for sm_90 (bf16x6, 2026-11-27): 128x128x32 with 4
# stages and 128x128x64 with 3 use 255 registers and spill 0 / 20 bytes; 128x256x32 spills 1.2 KB
# (tried for its reuse all the same). GEMM_CONFIGS' 4-warp tiles above 64x64 (BLOCK_K 64) spill
# 0.4-4 KB and are not tried in these modes (prune_by_smem); FP32_CONFIGS' 4-warp 128x64x32 and
# 64x128x32 compile without spills and are. bmm's and patch_embed's configs are not pruned so.
SPLIT_PRECISION_CONFIGS = [] if INTERPRETER else [
    matmul_config(128, 128, 32, 4, 8),
    matmul_config(128, 128, 64, 3, 8),
    matmul_config(128, 256, 32, 3, 8),
]


# split-K's fp32 workspace holds SPLIT_K partial tiles per output tile; configs that would need more
# than this many bytes are not tried. split_k_ok keeps, of the nine SPLIT_K_CONFIGS at ViT-B/16
# shapes: batch 1, all for FC2 and seven for QKV, FC1 and the out-projection (at K = 768 two have
# too few K steps per share); batch 8, none for QKV and FC1, two for FC2 and the out-projection.
SPLIT_WS_BYTES = 16 << 20


def split_ws_elems(c: triton.Config, M: int, N: int) -> int:
    """fp32 workspace elements config `c` needs for an [M, N] output (0 without split-K)."""
    k = c.kwargs
    if _split_k(c) == 1:
        return 0
    return k["SPLIT_K"] * triton.cdiv(M, k["BLOCK_M"]) * k["BLOCK_M"] * triton.cdiv(N, k["BLOCK_N"]) * k["BLOCK_N"]


def split_k_ok(c: triton.Config, M: int, N: int, K: int) -> bool:
    """Whether a split-K config is worth trying: every share of K gets at least two K steps, and
    the workspace stays within SPLIT_WS_BYTES. Always True for SPLIT_K = 1."""
    split = _split_k(c)
    return split == 1 or (triton.cdiv(K, c.kwargs["BLOCK_K"]) >= 2 * split
                          and split_ws_elems(c, M, N) * 4 <= SPLIT_WS_BYTES)


def prune_by_smem(configs, named_args, **kwargs):
    """Drop configs whose operand pipeline cannot fit shared memory for this dtype (fp32 = 4 B),
    and split-K configs where `split_k_ok` says no."""
    itemsize = named_args["a_ptr"].element_size()
    M, N, K = (kwargs.get(n, named_args.get(n)) for n in ("M", "N", "K"))
    split_mode = itemsize == 4 and kwargs.get("PRECISION", "ieee") not in ("ieee", "tf32")
    fits = [
        c for c in configs
        if c.num_stages * (c.kwargs["BLOCK_M"] + c.kwargs["BLOCK_N"]) * c.kwargs["BLOCK_K"] * itemsize
        <= _SMEM_BYTES and (itemsize == 4 or not any(c is f for f in FP32_CONFIGS))
        and (split_mode or not any(c is f for f in SPLIT_PRECISION_CONFIGS))
        and not (split_mode and c.num_warps == 4 and c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] > 64 * 64
                 and any(c is f for f in GEMM_CONFIGS))
        and (M is None or split_k_ok(c, M, N, K))
    ]
    return fits or [c for c in configs if _split_k(c) == 1][-1:] or configs[-1:]


@triton.jit
def _matmul_kernel(
    a_ptr,  # A [M, K] viewed as rows m -> (m // rows_inner, m % rows_inner), any strides
    w_ptr,  # W [N, K] nn.Linear layout, any strides; read as W^T [K, N]
    bias_ptr,  # bias [N] (unused unless HAS_BIAS)
    res_ptr,  # residual, same row layout as out (unused unless EPILOGUE adds it)
    out_ptr,  # out [M, N], same row layout as A
    ws_ptr,  # fp32 split-K workspace (split_k_reduce; unused when SPLIT_K = 1)
    cnt_ptr,  # int32 split-K arrival counters, one per output tile, all 0 (unused when SPLIT_K = 1)
    ln_ptr,  # A's row stats [M, 2, K/32] fp32 (_lnfold; unused unless LN_FOLD)
    colsum_ptr,  # fp32 [N]: sum over k of W (unused unless LN_FOLD)
    stats_ptr,  # out's row stats [M, 2, N/32] fp32, written (unused unless ROW_STATS)
    ln_eps,  # the folded layernorm's eps (unused unless LN_FOLD)
    M, N, K,  # GEMM sizes
    rows_inner,  # rows per leading index (T of a [B, T, *] tensor; M for 2-D)
    stride_a0, stride_a1, stride_ak,  # A: leading index, row within it, K
    stride_wn, stride_wk,  # W: N, K
    stride_bias,  # bias: N
    stride_r0, stride_r1, stride_rn,  # residual: leading index, row, N
    stride_o0, stride_o1, stride_on,  # out: leading index, row, N
    HAS_BIAS: tl.constexpr,
    EPILOGUE: tl.constexpr,  # one of EPILOGUES
    GELU_FORM: tl.constexpr,  # "gelu" epilogues' form: gelu_form(out dtype)
    LN_FOLD: tl.constexpr,  # A is a layernorm's raw input, W its folded weights (_lnfold)
    LN_CP2: tl.constexpr,  # K / 32 rounded up to a power of 2 (LN_FOLD)
    ROW_STATS: tl.constexpr,  # also store out's row stats for the next GEMM's LN_FOLD (_lnfold)
    PRECISION: tl.constexpr,  # tl.dot input_precision (_common.PRECISIONS; ignored for 16-bit)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,  # tile rows per group: consecutive programs share W tiles in L2
    SPLIT_K: tl.constexpr,  # programs per output tile (grid axis 1), each over a share of K
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks in the main loop
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
    TF32_OUT: tl.constexpr = False,  # fp32 out stored rounded to TF32 (_tiles.tf32_rounded)
):
    pdl_start(PDL)
    # Grouped tile order: neighbouring programs share A rows and W columns in L2.
    tile = tl.program_id(0)
    pid_m, pid_n = grouped_tile(tile, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    # This program's share of K: whole BLOCK_K steps, [k0, k0 + k_len) (empty past the end).
    pid_k = tl.program_id(1)
    k_share = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT_K) * BLOCK_K
    k_len = tl.minimum(K - pid_k * k_share, k_share)
    k0 = (pid_k * k_share).to(tl.int64)

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Wrap out-of-range rows/cols onto valid ones for the loads (results masked at the store).
    rm_ld = rm % M
    rn_ld = rn % N
    offs_k = tl.arange(0, BLOCK_K)
    row_a = (rm_ld // rows_inner).to(tl.int64) * stride_a0 + (rm_ld % rows_inner).to(tl.int64) * stride_a1
    col_w = rn_ld.to(tl.int64) * stride_wn
    a_ptrs = a_ptr + row_a[:, None] + (k0 + offs_k[None, :]) * stride_ak  # [BLOCK_M, BLOCK_K]
    w_ptrs = w_ptr + col_w[None, :] + (k0 + offs_k[:, None]) * stride_wk  # [BLOCK_K, BLOCK_N] = W^T

    # Main loop (fp32 accumulator): reads BLOCK_K*(BLOCK_M + BLOCK_N) elements and does
    # 2*BLOCK_M*BLOCK_N*BLOCK_K FLOPs per K step.
    acc = dot_k_loop(a_ptrs, w_ptrs, offs_k, k_len, stride_ak, stride_wk,
                     BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, PRECISION)
    if SPLIT_K > 1:
        acc, last = split_k_reduce(acc, ws_ptr, cnt_ptr, tile, pid_k, SPLIT_K, BLOCK_M, BLOCK_N)
        if last:  # the tile's last program: the whole sum; the epilogue is its alone
            _epilogue(acc, rm, rn, rn_ld, M, N, rows_inner, bias_ptr, stride_bias, res_ptr, stride_r0,
                      stride_r1, stride_rn, out_ptr, stride_o0, stride_o1, stride_on, HAS_BIAS, EPILOGUE, GELU_FORM,
                      ln_ptr, colsum_ptr, stats_ptr, ln_eps, K, pid_n * BLOCK_N, LN_FOLD, LN_CP2, ROW_STATS, TF32_OUT,
                      BLOCK_M, BLOCK_N)
    else:
        _epilogue(acc, rm, rn, rn_ld, M, N, rows_inner, bias_ptr, stride_bias, res_ptr, stride_r0,
                  stride_r1, stride_rn, out_ptr, stride_o0, stride_o1, stride_on, HAS_BIAS, EPILOGUE, GELU_FORM,
                      ln_ptr, colsum_ptr, stats_ptr, ln_eps, K, pid_n * BLOCK_N, LN_FOLD, LN_CP2, ROW_STATS, TF32_OUT,
                      BLOCK_M, BLOCK_N)


@triton.jit
def _epilogue(acc, rm, rn, rn_ld, M, N, rows_inner, bias_ptr, stride_bias, res_ptr, stride_r0, stride_r1,
              stride_rn, out_ptr, stride_o0, stride_o1, stride_on, HAS_BIAS: tl.constexpr,
              EPILOGUE: tl.constexpr, GELU_FORM: tl.constexpr, ln_ptr, colsum_ptr, stats_ptr, ln_eps, K,
              off_n, LN_FOLD: tl.constexpr, LN_CP2: tl.constexpr, ROW_STATS: tl.constexpr,
              TF32_OUT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # On the fp32 accumulator: (folded layernorm,) + bias, GELU, + residual, then one rounding on
    # store (and the stored rows' stats for the next GEMM's folded layernorm).
    if LN_FOLD:  # rows and columns wrapped into range, as loaded; masked at the store
        rm_ld = rm % M
        acc = apply_ln_fold(acc, rm_ld, rm_ld < M, rn_ld, rn_ld < N, ln_ptr, colsum_ptr, K, ln_eps, LN_CP2)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + rn_ld * stride_bias).to(tl.float32)
        acc += bias[None, :]
    if EPILOGUE == "gelu" or EPILOGUE == "gelu_residual":
        acc = gelu(acc, GELU_FORM)
    if EPILOGUE == "gelu_tanh":
        acc = gelu_tanh(acc)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    b_idx = (rm // rows_inner).to(tl.int64)
    t_idx = (rm % rows_inner).to(tl.int64)
    if EPILOGUE == "residual" or EPILOGUE == "gelu_residual":
        r_ptrs = res_ptr + (b_idx * stride_r0 + t_idx * stride_r1)[:, None] + rn[None, :] * stride_rn
        acc += tl.load(r_ptrs, mask=mask, other=0.0).to(tl.float32)
    o_ptrs = out_ptr + (b_idx * stride_o0 + t_idx * stride_o1)[:, None] + rn[None, :] * stride_on
    y = tf32_rounded(acc.to(out_ptr.dtype.element_ty), TF32_OUT)
    tl.store(o_ptrs, y, mask=mask)
    if ROW_STATS:
        store_row_stats(y.to(tl.float32), rm, rm < M, off_n, rn < N, stats_ptr, N, BLOCK_M, BLOCK_N)


_heuristic = triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
_KEY = ["M", "N", "K", "EPILOGUE", "PRECISION", "HAS_BIAS", "LN_FOLD", "ROW_STATS"]
SPLIT_K_ENV = "VITBENCH_SPLIT_K"  # 0: SPLIT_K_CONFIGS leave the autotuned configs (for A/B runs)


def split_k_setting() -> bool:
    """VITBENCH_SPLIT_K as a bool: "0" -> False; unset, "" or "1" -> True; else VitbenchError."""
    return env_flag(SPLIT_K_ENV, "autotune the split-K configs too", default=True)


try:
    _SPLIT_K_ON = split_k_setting() and not INTERPRETER
except VitbenchError:  # reported by the CLI at start (vitbench.cli), here: off
    _SPLIT_K_ON = False
_CONFIGS = GEMM_CONFIGS + FP32_CONFIGS + SPLIT_PRECISION_CONFIGS + (SPLIT_K_CONFIGS if _SPLIT_K_ON else [])
_matmul = autotune(_CONFIGS, key=_KEY, prune_configs_by={"early_config_prune": prune_by_smem})(
    _heuristic(_matmul_kernel)
)
# out aliasing residual (x = x + f(x) in place) is never autotuned in place: _common.tune_apart.


def matmul_cost(M: int, N: int, K: int, itemsize: int, has_bias: bool = False,
                has_residual: bool = False) -> tuple[int, int]:
    """(FLOPs, bytes) of one matmul call: 2MNK; A, W, bias, residual read once, out written once."""
    flops = 2 * M * N * K
    elems = M * K + N * K + M * N + (N if has_bias else 0) + (M * N if has_residual else 0)
    return flops, elems * itemsize


def check_out(out: object, shape: tuple[int, ...], dtype: torch.dtype,
              inputs: dict[str, torch.Tensor | None]) -> torch.Tensor:
    """The GEMM kernels' `out=` check: any strides, and no memory shared with the inputs."""
    device = next(t.device for t in inputs.values() if t is not None)
    return _common.check_out(out, shape, dtype, device, contiguous_last=False, disjoint_from=inputs)


def _rows(t: torch.Tensor) -> tuple[int, int]:
    """(leading-index stride, row stride) of a 2-D or 3-D tensor's row layout."""
    return (t.stride(0), t.stride(1)) if t.dim() == 3 else (0, t.stride(0))


# Which kernel runs the calls that the Hopper TMA path (kernels/matmul_tma.py) can take (see
# tma_eligible), read once from VITBENCH_MATMUL: "auto" (default) times the kernels on the first
# call of each shape and keeps the fastest (kernels/_dispatch.py): the pointer and TMA kernels, and
# the Gluon kernel's configs where it can take the call (kernels/matmul_gluon.py; VITBENCH_GLUON=0
# leaves them out); "pointer" never uses the TMA kernel; "tma" always does. The interpreter always runs the pointer kernel ("auto" times nothing).
MATMUL_MODES = ("auto", "pointer", "tma")
MODE: str = os.environ.get("VITBENCH_MATMUL", "").strip().lower() or "auto"
# "auto" leaves GEMMs with fewer rows than this on the pointer kernel, untimed. Measured on an H100
# (bf16 ViT-B/16, CUDA-graph replay, 2026-11-27): with the choice timed per shape, batch 1 (197
# rows) took 0.641 ms and batch 8 (1,576 rows) 1.199 ms, against 0.561 and 1.144 ms with every
# GEMM on the pointer kernel. Part of that gap may be the autotuner's run-to-run picks, found
# later the same day (see _common.TUNE_GRAPH_BELOW_MS); a clean A/B of this rule is still to do.
TMA_MIN_ROWS = 4096
TMA_MIN_ROWS_ENV = "VITBENCH_TMA_MIN_ROWS"  # overrides it (for A/B runs of the rule); 0 = time every shape


def tma_min_rows() -> int:
    """TMA_MIN_ROWS, or VITBENCH_TMA_MIN_ROWS when set (an integer >= 0)."""
    raw = os.environ.get(TMA_MIN_ROWS_ENV, "").strip()
    if not raw:
        return TMA_MIN_ROWS
    if not (raw.isascii() and raw.isdigit()):
        raise VitbenchError(f"{TMA_MIN_ROWS_ENV}={raw!r}: give a row count >= 0 (0: time the TMA "
                            "kernel at every shape), or leave it unset")
    return int(raw)


def _choice_key(a, w, bias, epilogue, residual, out, ln=None, row_stats=None) -> tuple[tuple, bool]:
    """(the per-shape GEMM choice's cache key, whether out is the residual itself). The key holds
    the speed-relevant layout only (eligibility is checked on every call anyway);
    kernel_choices() in vitbench.bench.metadata unpacks it."""
    inplace = (out is not None and residual is not None and out.data_ptr() == residual.data_ptr()
               and out.stride() == residual.stride())
    key = ("matmul", tuple(a.shape), a.stride(-2), w.shape[0], a.dtype, epilogue, bias is not None,
           inplace, a.device, w.stride(0), None if out is None else out.stride(-2),
           None if residual is None else residual.stride(-2), ln is not None, row_stats is not None)
    return key, inplace


def _scratch(a, w, residual, inplace: bool) -> tuple:
    """(residual, out) for timing the candidates: the real out and residual are written only by
    the call that follows (in place: a copy of the residual, which is also the output)."""
    res = residual.clone() if inplace else residual
    return res, res if inplace else torch.empty((*a.shape[:-1], w.shape[0]), dtype=a.dtype, device=a.device)


def _route(a, w, bias, epilogue, residual, out, ln=None, row_stats=None, precision="ieee") -> str:
    """Which kernel this call goes to: "pointer", "tma" (matmul_tma) or a Gluon config's name
    (matmul_gluon.CANDIDATES), from MODE and, for "auto", the per-shape timing. 16-bit calls, and
    fp32 "tf32" ones with VITBENCH_TF32_TMA=1 (their choice keys hold dtype float32: no other
    fp32 call comes here)."""
    if MODE not in MATMUL_MODES:
        raise VitbenchError(f"VITBENCH_MATMUL={MODE!r}: choose one of {', '.join(MATMUL_MODES)}")
    if MODE == "pointer" or (MODE == "auto" and INTERPRETER):
        return "pointer"
    from vitbench.kernels.matmul_tma import tma_eligible

    if not tma_eligible(a, w, bias, epilogue=epilogue, residual=residual, out=out, precision=precision):
        return "pointer"
    if MODE == "tma":
        return "tma"
    if a.numel() // a.shape[-1] < tma_min_rows():
        return "pointer"
    from vitbench.kernels import _dispatch, matmul_gluon
    from vitbench.kernels.matmul_tma import matmul_tma

    key, inplace = _choice_key(a, w, bias, epilogue, residual, out, ln, row_stats)
    hit = _dispatch.lookup(key)
    if hit is not None:
        # the key leaves out what only the Gluon kernel needs (e.g. a unit-stride bias, rows that
        # flatten without a copy) and VITBENCH_GLUON: checked again, else the TMA kernel
        if hit in matmul_gluon.CANDIDATES and not (
                ln is None and row_stats is None and matmul_gluon.gluon_setting()
                and matmul_gluon.gluon_eligible(a, w, bias, epilogue=epilogue, residual=residual, out=out)):
            return "tma"
        return hit
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return "pointer"  # nothing can be timed inside a graph capture: the pointer kernel, uncached
    res, scratch = _scratch(a, w, residual, inplace)
    kw = dict(epilogue=epilogue, residual=res, out=scratch, ln=ln, row_stats=row_stats)
    candidates = {
        "pointer": lambda: _matmul_pointer(a, w, bias, precision=precision, **kw),
        "tma": lambda: matmul_tma(a, w, bias, precision=precision, **kw),
    }
    if (ln is None and row_stats is None and matmul_gluon.gluon_setting()
            and matmul_gluon.gluon_eligible(a, w, bias, epilogue=epilogue, residual=res, out=scratch)):
        for name, cfg in matmul_gluon.CANDIDATES.items():
            candidates[name] = (lambda cfg=cfg: matmul_gluon.matmul_gluon(
                a, w, bias, epilogue=epilogue, residual=res, out=scratch, config=cfg))
    return _dispatch.fastest(key, candidates)


def _route_fp32(a, w, bias, epilogue, residual, out) -> str:
    """Exact fp32 (VITBENCH_FMA=1, VITBENCH_MATMUL=auto): "pointer" or a config name of
    matmul_fma.CANDIDATES (the CUDA-core Gluon GEMM), whichever timed faster for this shape; unless
    VITBENCH_FMA_SPLIT_K=0 also the split-K configs that matmul_fma_splitk.candidates proposes for
    it (names of matmul_fma_splitk.CANDIDATES), the choice then cached apart from the one made
    without them. `out` is given (checked_args made it)."""
    from vitbench.kernels import _dispatch, matmul_fma, matmul_fma_splitk

    split_k = matmul_fma_splitk.fma_split_k_setting()  # a bad value raises here, before any timing
    if a.numel() == 0 or not matmul_fma.fma_eligible(a, w, bias, epilogue=epilogue, residual=residual, out=out):
        return "pointer"
    key, inplace = _choice_key(a, w, bias, epilogue, residual, out)  # the dtype keeps it from _route's
    if split_k:
        key = (*key, "fma-split-k")
    hit = _dispatch.lookup(key)
    if hit is not None:
        return hit
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return "pointer"  # nothing can be timed inside a graph capture: the pointer kernel, uncached
    res, scratch = _scratch(a, w, residual, inplace)
    candidates = {"pointer": lambda: _matmul_pointer(a, w, bias, epilogue=epilogue, residual=res,
                                                     precision="ieee", out=scratch)}
    for name, cfg in matmul_fma.CANDIDATES.items():
        candidates[name] = (lambda cfg=cfg: matmul_fma.matmul_fma(
            a, w, bias, epilogue=epilogue, residual=res, out=scratch, config=cfg))
    if split_k:
        K, N = a.shape[-1], w.shape[0]
        for c in matmul_fma_splitk.candidates(a.numel() // K, N, K, _common._sm_count(a.device.index or 0)):
            candidates[c.name] = (lambda c=c: matmul_fma_splitk.matmul_fma_splitk(
                a, w, bias, config=c, epilogue=epilogue, residual=res, out=scratch))
    return _dispatch.fastest(key, candidates)


def matmul(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
           epilogue: str = "none", residual: torch.Tensor | None = None,
           precision: str = "ieee", out: torch.Tensor | None = None,
           ln: LNFold | None = None, row_stats: torch.Tensor | None = None,
           tf32_exact: bool = False, tf32_out: bool = False) -> torch.Tensor:
    """out = epilogue(a @ w.T + bias); a [..., K] (2-D or 3-D), w [N, K] (nn.Linear layout).

    Epilogues: "none", "gelu" (exact GELU: erf form for fp32 outputs; for 16-bit ones a fitted
    form with one hardware tanh, within 3.0e-5 on an H100, or with exp2 + division, within 2.6e-5,
    under VITBENCH_FAST_GELU=0: kernels/_gelu.py), "gelu_tanh", "residual" (+ residual),
    "gelu_residual" (gelu(...) + residual).
    `residual` has the output's shape and is required exactly by the residual epilogues. fp32
    inputs use exact "ieee" dots unless precision names another mode (_common.PRECISIONS).
    `out` may alias `residual` (same view)
    for an in-place residual add. Folded layernorm (vitbench.kernels._lnfold): with `ln`
    (LNFold(stats, colsum, eps)), a is a layernorm's raw input and w, bias its folded weights;
    with `row_stats` ([M, 2, N/32] fp32), the stored output's row stats are written there for the
    next GEMM's `ln`. On a GPU, 16-bit calls whose last round of tiles would leave most SMs idle
    may run as two GEMMs over row ranges (kernels/_rowsplit.py), the second of them as a two-pass
    split-K (kernels/matmul_splitk.py), each where that timed faster.
    TF32 (fp32, precision "tf32"): operands are rounded to the nearest TF32 value, as cuBLAS
    does. tf32_exact=True promises that a and w hold TF32 values already (low 13 mantissa bits
    zero: stored by a tf32_out producer, or rounded with _common.round_tf32_); such calls may
    also run on the TMA kernel under VITBENCH_TF32_TMA, whose TF32 wgmma drops those bits of
    its loads instead of rounding them (exact only if they are zero). tf32_out=True stores an
    fp32 output rounded to the nearest TF32 value, for a consumer with tf32_exact.
    """
    if MODE == "auto" and not INTERPRETER:
        from vitbench.kernels.matmul_gluon import gluon_setting

        gluon_setting()  # a bad VITBENCH_GLUON raises here, not inside a timing that would skip it
    if ln is None and row_stats is None and _row_split_ok(a, w, bias, epilogue, residual, out, precision):
        from vitbench.kernels import matmul_splitk

        # read here, where a bad value raises (not inside the timing below); the row split's
        # choice is cached per setting
        rest = _matmul_rest if matmul_splitk.two_pass_setting() else None
        m1 = _rowsplit.choose(_matmul_whole, a, w, bias, epilogue, residual, out, rest=rest)
        if m1 is not None:
            if out is None:
                out = torch.empty((*a.shape[:-1], w.shape[0]), dtype=a.dtype, device=a.device)
            return _rowsplit.run_split(_matmul_whole, m1, a, w, bias, epilogue, residual, out, rest=rest)
    return _matmul_whole(a, w, bias, epilogue=epilogue, residual=residual, precision=precision, out=out,
                         ln=ln, row_stats=row_stats, tf32_exact=tf32_exact, tf32_out=tf32_out)


def _row_split_ok(a, w, bias, epilogue, residual, out, precision) -> bool:
    """Whether a call may be row-split (kernels/_rowsplit.py): well-formed 16-bit arguments
    (anything else goes whole, where a user's mistake gets its error; a bad `out` raises here, as
    the whole call would)."""
    tensors = [t for t in (a, w, bias, residual, out) if t is not None]
    if not (all(isinstance(t, torch.Tensor) for t in tensors) and precision in PRECISIONS
            and a.dtype in (torch.float16, torch.bfloat16)
            and all(t.dtype == a.dtype and t.device == a.device for t in tensors)
            and a.dim() in (2, 3) and w.dim() == 2 and w.shape[1] == a.shape[-1]
            and (bias is None or tuple(bias.shape) == (w.shape[0],)) and epilogue in EPILOGUES
            and (residual is not None) == (epilogue in _RESIDUAL_EPILOGUES)):
        return False
    shape = (*a.shape[:-1], w.shape[0])
    if not all(t is None or tuple(t.shape) == shape for t in (residual, out)):
        return False
    if out is not None:  # the whole call's check, once, before either half writes
        same_view = (residual is not None and out.data_ptr() == residual.data_ptr()
                     and out.stride() == residual.stride())
        check_out(out, shape, a.dtype, {"a": a, "w": w, "bias": bias,
                                        "residual": None if same_view else residual})
    return True


def _matmul_rest(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
                 epilogue: str = "none", residual: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """The second GEMM of a row split (few rows): the two-pass split-K where it timed faster
    (kernels/matmul_splitk.py), else one GEMM."""
    from vitbench.kernels import matmul_splitk

    config = matmul_splitk.choose(_matmul_whole, a, w, bias, epilogue, residual, out)
    if config is not None:
        return matmul_splitk.matmul_splitk(a, w, bias, config=config, epilogue=epilogue,
                                           residual=residual, out=out)
    return _matmul_whole(a, w, bias, epilogue=epilogue, residual=residual, out=out)


def _matmul_whole(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
                  epilogue: str = "none", residual: torch.Tensor | None = None,
                  precision: str = "ieee", out: torch.Tensor | None = None,
                  ln: LNFold | None = None, row_stats: torch.Tensor | None = None,
                  tf32_exact: bool = False, tf32_out: bool = False) -> torch.Tensor:
    """matmul() as one GEMM (no row split): the TMA, a Gluon or the pointer kernel."""
    # exact fp32: the CUDA-core Gluon kernels where they time faster (they do not round to TF32:
    # a tf32_out call stays on the pointer kernel)
    if (precision == "ieee" and ln is None and row_stats is None and not tf32_out
            and isinstance(a, torch.Tensor) and a.dtype == torch.float32 and MODE == "auto"
            and not INTERPRETER):
        from vitbench.kernels import matmul_fma

        if matmul_fma.fma_setting():  # a bad VITBENCH_FMA raises here, before any timing
            a, w, bias, residual, out, *_ = checked_args(a, w, bias, epilogue, residual, precision, out)
            fp32_route = _route_fp32(a, w, bias, epilogue, residual, out)
            if fp32_route in matmul_fma.CANDIDATES:
                return matmul_fma.matmul_fma(a, w, bias, epilogue=epilogue, residual=residual, out=out,
                                             config=matmul_fma.CANDIDATES[fp32_route])
            if fp32_route != "pointer":  # a split-K config (VITBENCH_FMA_SPLIT_K on)
                from vitbench.kernels import matmul_fma_splitk

                return matmul_fma_splitk.matmul_fma_splitk(
                    a, w, bias, config=matmul_fma_splitk.CANDIDATES[fp32_route], epilogue=epilogue,
                    residual=residual, out=out)
    route = "pointer"
    if precision in PRECISIONS and isinstance(a, torch.Tensor) and a.dtype in (torch.float16, torch.bfloat16):
        route = _route(a, w, bias, epilogue, residual, out, ln, row_stats)
    elif precision == "tf32" and tf32_exact and isinstance(a, torch.Tensor) and a.dtype == torch.float32:
        from vitbench.kernels.matmul_tma import tf32_tma_setting

        if tf32_tma_setting():  # a bad VITBENCH_TF32_TMA raises here
            route = _route(a, w, bias, epilogue, residual, out, ln, row_stats, precision="tf32")
    if route == "tma":
        from vitbench.kernels.matmul_tma import matmul_tma

        return matmul_tma(a, w, bias, epilogue=epilogue, residual=residual, out=out, ln=ln, row_stats=row_stats,
                          precision=precision, tf32_out=tf32_out)
    if route != "pointer":
        from vitbench.kernels import matmul_gluon

        return matmul_gluon.matmul_gluon(a, w, bias, epilogue=epilogue, residual=residual, out=out,
                                         config=matmul_gluon.CANDIDATES[route])
    return _matmul_pointer(a, w, bias, epilogue=epilogue, residual=residual, precision=precision, out=out,
                           ln=ln, row_stats=row_stats, tf32_out=tf32_out)


def _split_sizes(M: int, N: int, K: int, configs: list[triton.Config], forced: bool) -> tuple[int, int]:
    """(workspace elements, output tiles) enough for every split-K config of `configs` that can
    launch at this shape: all of them when forced (one config, no pruning), else those the
    autotuner's prune keeps (split_k_ok). (0, 0) when none splits."""
    split = [c for c in configs if _split_k(c) > 1 and (forced or split_k_ok(c, M, N, K))]
    ws = max((split_ws_elems(c, M, N) for c in split), default=0)
    tiles = max((triton.cdiv(M, c.kwargs["BLOCK_M"]) * triton.cdiv(N, c.kwargs["BLOCK_N"]) for c in split),
                default=0)
    return ws, tiles


# Split-K arrival counters per (device, stream): zeroed once, outside any graph capture, and left at
# 0 by every launch (split_k_reduce). Per stream, so that launches on concurrent streams never
# share a counter. Counters first needed during a CUDA graph capture are made in it (the zeroing
# becomes one node of that graph) and shared by that capture's launches only: _CAPTURED is
# emptied by the next call made outside a capture (every capture path here warms up eagerly first).
_COUNTERS: dict[tuple, torch.Tensor] = {}
_CAPTURED: dict[tuple, torch.Tensor] = {}
_PLACEHOLDERS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _split_buffers(M: int, N: int, K: int, device: torch.device, kernel) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 workspace, int32 counters) for launching `kernel` (the autotuner, or a forced config)
    at this shape. Cached 1-element placeholders when no config it may launch splits K."""
    forced = isinstance(kernel, _common._FixedConfig)
    return split_scratch(*_split_sizes(M, N, K, [kernel.config] if forced else _CONFIGS, forced), device)


def split_scratch(ws_elems: int, tiles: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 workspace of `ws_elems`, zeroed int32 arrival counters for at least `tiles` tiles) for
    a launch that splits tiles along K (split_k_reduce / split_reduce); cached 1-element
    placeholders when ws_elems is 0."""
    if ws_elems == 0:
        return _PLACEHOLDERS.get(str(device)) or _placeholders(device)
    on_gpu = device.type == "cuda"
    stream = torch.cuda.current_stream(device).cuda_stream if on_gpu else 0
    key = (str(device), stream)
    capturing = on_gpu and torch.cuda.is_current_stream_capturing()
    if not capturing:
        _CAPTURED.clear()
    cache = _CAPTURED if capturing and key not in _COUNTERS else _COUNTERS
    counters = cache.get(key)
    if counters is None or counters.numel() < tiles:
        counters = cache[key] = torch.zeros(max(tiles, 1024), dtype=torch.int32, device=device)
    return torch.empty(ws_elems, dtype=torch.float32, device=device), counters


def _ln_args(ln: LNFold | None, row_stats: torch.Tensor | None, M: int, N: int, K: int,
             device: torch.device) -> tuple:
    """(ln stats, colsum, row stats out, eps, constexprs) for a GEMM launch; checked (_lnfold).
    Unused pointers get a cached 1-element placeholder."""
    if ln is not None:
        ln = check_ln(ln, M, K, N, device)
    if row_stats is not None:
        row_stats = check_stats("row_stats", row_stats, M, N, device)
    ph = _PLACEHOLDERS.get(str(device)) or _placeholders(device)
    consts = {"LN_FOLD": ln is not None, "ROW_STATS": row_stats is not None,
              "LN_CP2": triton.next_power_of_2(max(K // 32, 1)) if ln is not None else 1}
    return (ln.stats if ln is not None else ph[0], ln.colsum if ln is not None else ph[0],
            row_stats if row_stats is not None else ph[0], float(ln.eps) if ln is not None else 1e-5,
            consts)


def _placeholders(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    _PLACEHOLDERS[str(device)] = (torch.empty(1, dtype=torch.float32, device=device),
                                  torch.zeros(1, dtype=torch.int32, device=device))
    return _PLACEHOLDERS[str(device)]


def checked_args(a, w, bias, epilogue: str, residual, precision: str, out) -> tuple:
    """The pointer launchers' argument checks (VitbenchError naming the bad one):
    (a, w, bias, residual, out, dtype, dot precision, in place), `out` made when None."""
    if epilogue not in EPILOGUES:
        raise VitbenchError(f"epilogue must be one of {EPILOGUES}, got {epilogue!r}")
    a = check_tensor("a", a, ndim=(2, 3), contiguous_last=False)
    w = check_tensor("w", w, ndim=2, contiguous_last=False)
    if bias is not None:
        bias = check_tensor("bias", bias, ndim=1, contiguous_last=False)
    if epilogue in _RESIDUAL_EPILOGUES:
        if residual is None:
            raise VitbenchError(f"epilogue {epilogue!r} needs a residual tensor")
        residual = check_tensor("residual", residual, ndim=a.dim(), contiguous_last=False)
    elif residual is not None:
        raise VitbenchError(f"residual given but epilogue {epilogue!r} does not add it; "
                            "use epilogue='residual' or 'gelu_residual'")
    dtype = check_same_dtype(a=a, w=w, bias=bias, residual=residual)
    dot_precision = check_precision(precision, dtype)
    K = a.shape[-1]
    N = w.shape[0]
    if w.shape[1] != K:
        raise VitbenchError(f"w has shape {tuple(w.shape)}; expected [N, {K}] to match a's last dim {K}")
    if bias is not None and bias.shape[0] != N:
        raise VitbenchError(f"bias has shape {tuple(bias.shape)}; expected [{N}] (w's rows)")
    out_shape = (*a.shape[:-1], N)
    if residual is not None and tuple(residual.shape) != out_shape:
        raise VitbenchError(f"residual has shape {tuple(residual.shape)}; expected {out_shape}")

    inplace = False
    if out is None:
        out = torch.empty(out_shape, dtype=dtype, device=a.device)
    else:
        same_view = (residual is not None and out.data_ptr() == residual.data_ptr()
                     and out.stride() == residual.stride() and tuple(out.shape) == tuple(residual.shape))
        others = {"a": a, "w": w, "bias": bias, "residual": None if same_view else residual}
        out = check_out(out, out_shape, dtype, others)
        inplace = same_view
    return a, w, bias, residual, out, dtype, dot_precision, inplace


def _matmul_pointer(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
                    epilogue: str = "none", residual: torch.Tensor | None = None,
                    precision: str = "ieee", out: torch.Tensor | None = None,
                    ln: LNFold | None = None, row_stats: torch.Tensor | None = None,
                    tf32_out: bool = False) -> torch.Tensor:
    """matmul() on the pointer kernel (this file's), whatever VITBENCH_MATMUL says."""
    a, w, bias, residual, out, dtype, dot_precision, inplace = checked_args(
        a, w, bias, epilogue, residual, precision, out)
    K, N = a.shape[-1], w.shape[0]
    M = out.numel() // N if N else 0
    ln_args = _ln_args(ln, row_stats, M, N, K, a.device)
    if M == 0 or N == 0:
        return out
    rows_inner = a.shape[1] if a.dim() == 3 else M
    res = residual if residual is not None else out  # placeholder pointer when unused
    kernel = _matmul
    ws, counters = _split_buffers(M, N, K, a.device, kernel)
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),  # noqa: E731
                         meta["SPLIT_K"])
    precision_arg = dot_precision  # check_precision: "ieee" for 16-bit operands (ignored)

    def launch(dst: torch.Tensor) -> None:
        kernel[grid](
            a, w, bias if bias is not None else w, res, dst, ws, counters, *ln_args[:4],
            M, N, K, rows_inner,
            *_rows(a), a.stride(-1),
            w.stride(0), w.stride(1),
            bias.stride(0) if bias is not None else 0,
            *_rows(res), res.stride(-1),
            *_rows(dst), dst.stride(-1),
            HAS_BIAS=bias is not None, EPILOGUE=epilogue, GELU_FORM=gelu_form(dtype),
            PRECISION=precision_arg, TF32_OUT=bool(tf32_out), **ln_args[4], **launch_opts(),
        )

    if inplace:  # autotuned out of place first (_common.tune_apart), then run in place
        key = ("pointer", M, N, K, epilogue, precision_arg, bias is not None, dtype, str(a.device),
               ln is not None, row_stats is not None)
        _common.tune_apart(key, kernel, lambda: launch(_common.scratch_like(out)))
    launch(out)
    return out
