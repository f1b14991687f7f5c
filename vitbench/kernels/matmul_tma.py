"""Hopper fast path for the linear-layer GEMM: persistent, TMA tensor descriptors, wgmma.

Same contract as `vitbench.kernels.matmul`: out = epilogue(A @ W^T + bias [, residual]) with
A [M, K] (or [B, T, K] whose rows flatten to [M, K] without a copy), W [N, K] (nn.Linear layout),
fp32 accumulation, the epilogue on the fp32 accumulator, one rounding on store.

How it differs from matmul.py's pointer kernel:
- PER_SM programs per SM ("persistent", usually 1); each walks tiles tile_id = pid, pid + P, ... (P
  = programs launched) in the grouped order (GROUP_M row tiles per column sweep, so A and W tiles
  stay in L2). Either the tile and K loops are flattened (`tl.range(flatten=True)`) so the pipeline
  runs across tile boundaries, or (WARP_SPEC configs) the tile loop is warp-specialised: TMA
  producer warps and wgmma consumer warpgroups. triton 3.6 on sm_90 warp-specialises only an
  unflattened loop with num_warps=4 (found by compiling offline: with flatten=True or 8 warps the
  request is silently ignored), hence the two kinds of config;
- operands and output move through device-side tensor descriptors (`tl.make_tensor_descriptor`
  -> TMA `cp.async.bulk.tensor` on sm_90). TMA zero-fills out-of-range reads and clips
  out-of-range writes, so they need no masks; the residual is read with plain masked loads
  (`_load_residual` says why);
- W tiles are read as [BLOCK_N, BLOCK_K] (both operands K-major) and fed as `tl.dot(a, w.T)`,
  which wgmma takes straight from shared memory;
- optional epilogue subtiling: the [BLOCK_M, BLOCK_N] accumulator is stored as two
  [BLOCK_M, BLOCK_N/2] halves (bias/GELU/residual per half), halving the epilogue's live registers
  and its shared-memory staging buffer.
- PER_SM=2 configs run two programs per SM (each within half its shared memory and registers),
  hoping one's epilogue would overlap the other's wgmma. On an H100 it did not for FC1 + GELU
  (docs/performance.md, step 5); autotuning keeps them where they win (no epilogue, batch 32);
- STAGGER (not in TMA_CONFIGS; tools/epilogue_probe.py --stagger tries it) starts the second
  program of each SM that many clock cycles late, to run the two out of phase. No gain on an H100;
- RES_EARLY (not in TMA_CONFIGS; tools/epilogue_probe.py tries it) loads the residual tile before
  the K loop. On an H100 it was slower than the plain load in the epilogue and spilled registers
  in several configs.

Eligibility (`tma_eligible`): CUDA backend on compute capability >= 9 (or the interpreter),
fp16/bf16 (or fp32 with precision "tf32": wgmma's TF32 form, which takes both operands K-major,
as this kernel reads them; TF32_CONFIGS), every TMA operand viewable as 2-D rows with unit column
stride, 16-byte aligned base and row stride (so K % 8 == 0, and N % 8 == 0 for the
output/residual). Otherwise use `matmul`.

Cost: as matmul.py (`matmul_cost`): 2*M*N*K FLOPs; s*(M*K + N*K + M*N [+ N] [+ M*N]) bytes.

How matmul() uses it (VITBENCH_MATMUL, read once when vitbench.kernels.matmul is imported):
"auto" (default) times this kernel and the pointer kernel on the first call of each shape that
`tma_eligible` accepts and keeps the faster (kernels/_dispatch.py); "tma" always sends eligible
calls here; "pointer" never does. Measured on an H100 (docs/performance.md, steps 3-4): faster
than the pointer kernel for the large QKV/FC1/FC2 GEMMs, not for every small one.
A/B on a GPU:
    python tools/gemm_ab.py                     # ViT GEMMs, batch 8/32/256: pointer, tma, F.linear,
                                                # unfused torch; checked, then timed interleaved
    VITBENCH_MATMUL=pointer vitbench model ... --out results/ab-pointer   # vs the default (auto)
The CSV rows say provider "triton" either way (the mode is in the run metadata's settings): keep
the runs in separate --out folders. Offline (no GPU), check that every config still compiles to
wgmma + TMA without spills: python tools/matmul_tma_compile.py
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import _common
from vitbench.kernels._common import autotune, check_same_dtype, check_tensor
from vitbench.kernels._env import env_flag
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import grouped_tile, split_reduce, tf32_rounded
from vitbench.kernels._lnfold import LNFold, apply_ln_fold, store_row_stats
from vitbench.kernels._gelu import gelu, gelu_form, gelu_tanh
from vitbench.kernels.matmul import EPILOGUES, _ln_args, check_out, split_scratch

_RESIDUAL_EPILOGUES = ("residual", "gelu_residual")
_TMA_DTYPES = (torch.float16, torch.bfloat16)
_TF32_PRECISION = "tf32"  # the one fp32 mode this kernel takes (tl.dot input_precision)
_SMEM_BYTES = 227 * 1024  # H100 max dynamic shared memory per block
_SM_SMEM_BYTES = 228 * 1024  # H100 shared memory per SM, 1 KB of it reserved per resident block
_INTERPRETER_SMS = 3  # programs under the interpreter: fewer than tiles, so persistence is exercised


# Tail split (see `tail_split`): at most this many programs share one tile of the last, partial
# round of tiles. With VITBENCH_TAIL_SPLIT=1, autotuning tries it as a variant of each config that
# is not warp-specialised, at the shapes where it would split (`with_tail_split`). Off by default:
# on an H100 (eab4be3, ViT-B/16 batch 32, bf16) no variant was picked, each forced variant was
# 0-2% slower than its plain config except where the plain one runs 1.14 rounds (128x256 and
# 256x128 at FC2: -9%, -7%, still slower than the warp-specialised 128x128 pick), and two forwards
# each way differed by 0.7% (2.799 vs 2.818 ms), within noise (docs/performance.md, step 9).
TAIL_SPLIT_ENV = "VITBENCH_TAIL_SPLIT"
TAIL_SPLIT_MAX = 4


# fp32 with precision "tf32" on this kernel (TF32_CONFIGS, wgmma m64nNk8 on TF32 operands), for
# calls whose operands hold TF32 values already (matmul's tf32_exact): the wgmma reads its tiles
# from shared memory and drops their low 13 mantissa bits, where the pointer kernel rounds them in
# registers first (_tiles.round_tf32), which costs it its pipelining: 155-180 TFLOP/s on square
# sizes against cuBLAS's 356-370 (H200, 2026-11-28). On unrounded operands this kernel's
# ViT-B/16 forward was 1.56x HF SDPA's TF32 speed but 1.5e-3 off HF float64 (HF: 8.9e-4), which
# is why the model stores its GEMM inputs rounded (tf32_out) and asks for this kernel only then.
TF32_TMA_ENV = "VITBENCH_TF32_TMA"


def tf32_tma_setting() -> bool:
    """VITBENCH_TF32_TMA: 1 or unset (the default) lets matmul() time this kernel for fp32 "tf32"
    calls with TF32-exact operands (tf32_exact; as for 16-bit: VITBENCH_MATMUL=auto from
    TMA_MIN_ROWS rows, or always with VITBENCH_MATMUL=tma); 0 keeps them on the pointer kernel."""
    return env_flag(TF32_TMA_ENV, "time the TMA GEMM for fp32 tf32 calls", default=True)


def tail_split_setting() -> bool:
    """VITBENCH_TAIL_SPLIT as a bool: "1" -> True; unset, "" or "0" -> False; else VitbenchError."""
    return env_flag(TAIL_SPLIT_ENV, "autotune tail-split variants of the GEMM configs", default=False)


try:
    _TAIL = TAIL_SPLIT_MAX if tail_split_setting() else 1
except VitbenchError:  # reported by the CLI at start (vitbench.cli), here: off
    _TAIL = 1


def _cfg(bm: int, bn: int, bk: int, stages: int, warps: int, subtile: bool = True,
         ws: bool = False, group: int = 8, per_sm: int = 1, res_early: bool = False,
         stagger: int = 0, tail: int = 1) -> triton.Config:
    assert not (ws and subtile), "warp-specialised configs need the whole-tile epilogue"
    assert not (stagger and per_sm == 1), "STAGGER delays the second program of each SM"
    return triton.Config(
        {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group,
         "EPI_SUBTILE": subtile, "WARP_SPEC": ws, "FLATTEN": not ws, "PER_SM": per_sm,
         "RES_EARLY": res_early, "STAGGER": stagger, "TAIL_SPLIT": tail},
        num_stages=stages, num_warps=warps,
    )


# Hopper bf16/fp16 configs: wgmma-sized tiles (one warpgroup = 4 warps per 64 rows), 3-4 stage
# TMA pipelines. The interpreter takes the first config only: keep it small; the second is used by
# the tests to cover the unsplit epilogue and two programs per SM.
_INTERPRETER_CONFIGS = [_cfg(32, 64, 16, 2, 4, subtile=True),
                        _cfg(16, 32, 32, 2, 4, subtile=False, per_sm=2)]
TMA_CONFIGS = _INTERPRETER_CONFIGS if INTERPRETER else [
    _cfg(128, 256, 64, 3, 8),
    _cfg(128, 256, 64, 3, 8, subtile=False),
    _cfg(256, 128, 64, 3, 8),
    _cfg(128, 128, 64, 4, 8),
    _cfg(128, 128, 64, 4, 4),
    _cfg(128, 128, 128, 3, 8),
    _cfg(128, 64, 64, 4, 4),
    _cfg(64, 128, 64, 4, 4),  # small M (batch 1-8) -> more tiles per SM sweep
    _cfg(64, 64, 64, 4, 4),
    # warp-specialised: 1 TMA producer + 2 wgmma consumer warpgroups from num_warps=4 (the only
    # count sm_90 specialises). Whole-tile epilogue only: the split (reshape/permute/split) makes
    # triton 3.6's Hopper warp-specialisation pass abort ("unsupported op type").
    _cfg(128, 256, 64, 3, 4, subtile=False, ws=True),
    _cfg(128, 128, 64, 4, 4, subtile=False, ws=True),
    _cfg(128, 128, 128, 3, 4, subtile=False, ws=True),
    _cfg(128, 64, 64, 4, 4, subtile=False, ws=True),
    # two programs per SM (each within half the SM's shared memory and registers), meant to let
    # one's epilogue overlap the other's wgmma. Measured on an H100: no such overlap with GELU, but
    # the fastest config for some shapes (FC1 without epilogue at batch 32; docs/performance.md).
    _cfg(128, 128, 64, 3, 4, per_sm=2),
    _cfg(128, 128, 64, 2, 4, per_sm=2),
    _cfg(64, 256, 64, 2, 4, per_sm=2),
    _cfg(128, 64, 64, 4, 4, per_sm=2),
]


# fp32 operands ("tf32"), kept by prune_by_smem for 4-byte operands only (and the 16-bit configs
# for 2-byte ones): the 16-bit tiles with BLOCK_K 32, the same bytes per K step; the TF32 wgmma
# takes K 8 per instruction. Compiled offline for sm_90 (triton 3.6, `tools/matmul_tma_compile.py
# --dtype fp32`, epilogues none / residual / exact GELU): TF32 wgmma, no spills, 107-251 registers;
# the 128x256 and 256x128 tiles do not fit with a residual (pruned then). Not yet run on a GPU.
TF32_CONFIGS = [] if INTERPRETER else [
    _cfg(128, 256, 32, 3, 8),
    _cfg(256, 128, 32, 3, 8),
    _cfg(128, 128, 32, 4, 8),
    _cfg(128, 128, 32, 4, 4),
    _cfg(128, 64, 32, 4, 4),
    _cfg(64, 128, 32, 4, 4),
    _cfg(128, 128, 32, 4, 4, subtile=False, ws=True),
    _cfg(128, 64, 32, 3, 4, per_sm=2),
]


def _for_itemsize(c: triton.Config, itemsize: int) -> bool:
    """TF32_CONFIGS for 4-byte operands, the others for 2-byte ones (under the interpreter,
    whose config list is _INTERPRETER_CONFIGS, every config for both)."""
    return INTERPRETER or (itemsize == 4) == any(c is t for t in TF32_CONFIGS)


def _smem_bytes(c: triton.Config, itemsize: int, residual: bool) -> int:
    """Shared memory: operand ring (stages x (A + W) tiles) + output staging tile, + one more
    tile for a residual unless warp-specialised (the residual's register-layout conversion goes
    through shared memory: compiled offline, it adds 0.5-1 tile; this counts 1).

    Within 1 KB below the compiler's figure (barriers etc.) for every Hopper config (sm_90, bf16,
    compiled offline); the prune keeps that 1 KB margin.
    """
    k = c.kwargs
    sub_n = k["BLOCK_N"] // 2 if k["EPI_SUBTILE"] else k["BLOCK_N"]
    ring = c.num_stages * (k["BLOCK_M"] + k["BLOCK_N"]) * k["BLOCK_K"]
    staging = 2 if residual and not k["WARP_SPEC"] else 1
    return (ring + staging * k["BLOCK_M"] * sub_n) * itemsize


def fits(c: triton.Config, itemsize: int, residual: bool) -> bool:
    """Whether PER_SM programs of config `c` fit one SM's shared memory (with the estimate's 1 KB
    margin, and 1 KB reserved per program)."""
    need = _smem_bytes(c, itemsize, residual) + 1024
    per_sm = c.kwargs.get("PER_SM", 1)
    return need <= _SMEM_BYTES and per_sm * (need + 1024) <= _SM_SMEM_BYTES


def ln_fold_ok(c: triton.Config, ln_fold: bool, row_stats: bool) -> bool:
    """Configs that can run a folded layernorm (_lnfold): row stats need output sub-tiles of a
    multiple of 32 columns; and triton 3.6's Hopper warp-specialisation pass fails on both
    (compiled offline for sm_90: with row stats it aborts the process, not an exception; with a
    folded layernorm it raises), so neither runs warp-specialised."""
    k = c.kwargs
    sub_n = k["BLOCK_N"] // 2 if k["EPI_SUBTILE"] else k["BLOCK_N"]
    return not ((ln_fold or row_stats) and k["WARP_SPEC"]) and not (row_stats and sub_n % 32)


def prune_by_smem(configs, named_args, **kwargs):
    """The autotuner's candidates at this launch: configs that fit shared memory and can run its
    epilogue, plus their tail-split variants where those would split (`with_tail_split`)."""
    itemsize = named_args["a_ptr"].element_size()
    get = lambda name: kwargs.get(name, named_args.get(name))  # noqa: E731
    residual = get("EPILOGUE") in _RESIDUAL_EPILOGUES
    ln_fold, row_stats = bool(get("LN_FOLD")), bool(get("ROW_STATS"))
    usable = [c for c in configs if ln_fold_ok(c, ln_fold, row_stats)]
    usable = [c for c in usable if _for_itemsize(c, itemsize)] or usable
    kept = [c for c in usable if fits(c, itemsize, residual)] or usable[-1:]
    return with_tail_split(kept, get("M"), get("N"), get("K"), get("NUM_SMS"))


def with_tail_split(configs, M: int, N: int, K: int, sms: int, split: int | None = None) -> list:
    """`configs`, each followed by its variant with TAIL_SPLIT=`split` (default: _TAIL, i.e. off
    with VITBENCH_TAIL_SPLIT=0) where that variant would split its last round at this shape.

    Warp-specialised configs get none: triton 3.6 gives the second loop its own pipeline buffers
    there (compiled for sm_90: 164 -> 230 KB of shared memory for 128x128x64, 4 stages; more than
    an SM has for the others). The variants are separate candidates, not a replacement: the split
    loop adds registers (128x128, 4 warps: 168-200 -> 255, compiled offline), so the plain config
    may still be faster."""
    split = _TAIL if split is None else split
    out = []
    for c in configs:
        out.append(c)
        k = c.kwargs
        if split < 2 or k["WARP_SPEC"] or k["TAIL_SPLIT"] > 1:
            continue
        if _round_tail(M, N, K, sms, k, split)[2] > 1:
            out.append(triton.Config({**k, "TAIL_SPLIT": split}, num_warps=c.num_warps,
                                     num_stages=c.num_stages))
    return out


def tail_split(tiles: int, programs: int, k_tiles: int, max_split: int) -> int:
    """Shares of K per tile of the last round of a persistent launch (1: no split).

    `tiles` output tiles on `programs` programs run in rounds of `programs` tiles; the last round
    has tail = tiles % programs tiles, and with a small tail most programs idle through it (ViT-B/16
    FC2 at batch 32: 300 tiles of 128x128 on 132 SMs, a last round of 36 tiles, so 2.27 rounds' work
    takes 3 rounds' time). Split those tail tiles into s shares of K, one program each, s = what
    fills the programs (programs // tail), at most `max_split` and at most half the K steps; share
    j sums K steps [j * k_tiles // s, (j + 1) * k_tiles // s), so each gets at least two: the last
    round then takes about 1/s of a tile's time, plus writing and summing the partials
    (`split_reduce`). The kernel computes the same value (keep the two in step).
    """
    tail = tiles % programs
    if max_split < 2 or tail == 0:
        return 1
    s = min(programs // tail, max_split, k_tiles // 2)
    return s if s >= 2 else 1


def _round_tail(M: int, N: int, K: int, sms: int, meta: dict, max_split: int | None = None
                ) -> tuple[int, int, int]:
    """(output tiles, tiles of the split last round (0 when unsplit), shares each) of a launch
    with config `meta` (its TAIL_SPLIT unless `max_split`) at this shape."""
    tiles = triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"])
    programs = sms * meta["PER_SM"]
    split = tail_split(tiles, programs, triton.cdiv(K, meta["BLOCK_K"]),
                       meta["TAIL_SPLIT"] if max_split is None else max_split)
    return tiles, tiles % programs if split > 1 else 0, split


def grid(M: int, N: int, K: int, sms: int, meta: dict) -> tuple[int]:
    """Programs to launch: PER_SM per SM, or fewer when there is less work (one per tile, or one
    per share of a split tile). Each program's loops step by NUM_SMS * PER_SM, so with fewer
    tiles every loop runs once."""
    tiles, tail, split = _round_tail(M, N, K, sms, meta)
    return (min(sms * meta["PER_SM"], tiles - tail + tail * split),)


@functools.lru_cache(maxsize=None)
def _autotune_scratch_sizes(M: int, N: int, K: int, sms: int, split: int) -> tuple[int, int]:
    """tail_scratch_sizes for every candidate autotuning may launch at this shape (cached: the
    loop over the configs costs ~0.2 ms of host time, paid by every eager GEMM call otherwise)."""
    if split < 2:
        return 0, 0
    return tail_scratch_sizes(M, N, K, sms, with_tail_split(_ALL_CONFIGS, M, N, K, sms, split))


def tail_scratch_sizes(M: int, N: int, K: int, sms: int, configs) -> tuple[int, int]:
    """(fp32 workspace elements, tail tiles) enough for any of `configs` at this shape; (0, 0)
    when none splits its tail."""
    ws = tails = 0
    for c in configs:
        _, tail, split = _round_tail(M, N, K, sms, c.kwargs)
        ws = max(ws, tail * split * c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])
        tails = max(tails, tail)
    return ws, tails


@triton.jit
def _clock64():
    return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64,
                                     is_pure=False, pack=1)


@triton.jit
def _stagger_start(STAGGER: tl.constexpr, NUM_SMS: tl.constexpr):
    # Programs NUM_SMS.. (the second wave of block placement: with PER_SM=2 the second program on
    # each SM) spin STAGGER SM clock cycles before their first tile, so that the two programs of an
    # SM run out of phase: one's epilogue (CUDA-core work) during the other's wgmma K loop. Two
    # programs that start together stay in step (each tile takes as long as the other's), and then
    # both run their epilogues at once while the tensor cores wait. Assumes the block scheduler
    # places programs 0..NUM_SMS-1 one per SM first (not guaranteed). Measured on an H100: no gain
    # (docs/performance.md, step 6); no config in TMA_CONFIGS uses it (tools/epilogue_probe.py).
    if STAGGER > 0:
        if tl.program_id(0) >= NUM_SMS:
            t0 = _clock64()
            t = t0
            while t - t0 < STAGGER:
                t = _clock64()


@triton.jit
def _load_residual(res_ptr, stride_rm, off_m, off_n, M, N, BLOCK_M: tl.constexpr, SUB_N: tl.constexpr):
    # The residual comes in through plain masked loads, not a TMA descriptor. With a
    # descriptor load, every residual GEMM with more tiles than programs came out wrong on an
    # H100 (2026-11-27, rel err inf; one tile per program and the other epilogues were right).
    # Suspected cause: the residual tile shared a shared-memory buffer with the previous
    # tile's still-running asynchronous TMA store. Plain loads use no shared memory.
    rm = off_m + tl.arange(0, BLOCK_M)
    rn = off_n + tl.arange(0, SUB_N)
    r_ptrs = res_ptr + rm.to(tl.int64)[:, None] * stride_rm + rn[None, :]
    return tl.load(r_ptrs, mask=(rm[:, None] < M) & (rn[None, :] < N), other=0.0)


@triton.jit
def _epilogue_store(acc, res, off_m, off_n, M, N, bias_ptr, stride_bias, res_ptr, stride_rm, o_desc,
                    HAS_BIAS: tl.constexpr, EPILOGUE: tl.constexpr, GELU_FORM: tl.constexpr,
                    BLOCK_M: tl.constexpr, SUB_N: tl.constexpr, RES_EARLY: tl.constexpr,
                    stats_ptr, ROW_STATS: tl.constexpr, TF32_OUT: tl.constexpr):
    # acc: fp32 [BLOCK_M, SUB_N] sub-tile whose top-left output element is (off_m, off_n);
    # res: that sub-tile of the residual when loaded before the K loop (RES_EARLY), else unused.
    rm = off_m + tl.arange(0, BLOCK_M)
    rn = off_n + tl.arange(0, SUB_N)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + rn * stride_bias, mask=rn < N, other=0.0).to(tl.float32)
        acc += bias[None, :]
    if EPILOGUE == "gelu" or EPILOGUE == "gelu_residual":
        acc = gelu(acc, GELU_FORM)
    if EPILOGUE == "gelu_tanh":
        acc = gelu_tanh(acc)
    if EPILOGUE == "residual" or EPILOGUE == "gelu_residual":
        if not RES_EARLY:
            res = _load_residual(res_ptr, stride_rm, off_m, off_n, M, N, BLOCK_M, SUB_N)
        acc += res.to(tl.float32)
    y = tf32_rounded(acc.to(o_desc.dtype), TF32_OUT)
    o_desc.store([off_m, off_n], y)  # out-of-range part is clipped
    if ROW_STATS:  # the stored rows' stats for the next GEMM's folded layernorm (_lnfold)
        store_row_stats(y.to(tl.float32), rm, rm < M, off_n, rn < N, stats_ptr, N, BLOCK_M, SUB_N)


@triton.jit
def _tile_epilogue(acc, res, off_m, off_n, M, N, K, bias_ptr, stride_bias, res_ptr, stride_rm, o_desc,
                   ln_ptr, colsum_ptr, ln_eps, stats_ptr,
                   HAS_BIAS: tl.constexpr, EPILOGUE: tl.constexpr, GELU_FORM: tl.constexpr,
                   LN_FOLD: tl.constexpr, LN_CP2: tl.constexpr, ROW_STATS: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, EPI_SUBTILE: tl.constexpr,
                   RES_EARLY: tl.constexpr, TF32_OUT: tl.constexpr):
    # One finished fp32 [BLOCK_M, BLOCK_N] tile at (off_m, off_n): folded layernorm, then bias,
    # activation, residual and the store, whole or as two halves (EPI_SUBTILE).
    SUB_N: tl.constexpr = BLOCK_N // 2 if EPI_SUBTILE else BLOCK_N
    if LN_FOLD:  # folded layernorm (_lnfold), on the whole tile: each row's stats read once
        rm = off_m + tl.arange(0, BLOCK_M)
        rn = off_n + tl.arange(0, BLOCK_N)
        acc = apply_ln_fold(acc, rm, rm < M, rn, rn < N, ln_ptr, colsum_ptr, K, ln_eps, LN_CP2)
    if EPI_SUBTILE:
        # [BLOCK_M, BLOCK_N] -> [BLOCK_M, 2, SUB_N] -> [BLOCK_M, SUB_N, 2] -> two halves.
        acc = tl.permute(tl.reshape(acc, (BLOCK_M, 2, SUB_N)), (0, 2, 1))
        acc0, acc1 = tl.split(acc)
        if RES_EARLY:
            res0, res1 = tl.split(tl.permute(tl.reshape(res, (BLOCK_M, 2, SUB_N)), (0, 2, 1)))
        else:
            res0, res1 = acc0, acc1  # unused
        _epilogue_store(acc0, res0, off_m, off_n, M, N, bias_ptr, stride_bias, res_ptr, stride_rm,
                        o_desc, HAS_BIAS, EPILOGUE, GELU_FORM, BLOCK_M, SUB_N, RES_EARLY,
                        stats_ptr, ROW_STATS, TF32_OUT)
        _epilogue_store(acc1, res1, off_m, off_n + SUB_N, M, N, bias_ptr, stride_bias, res_ptr,
                        stride_rm, o_desc, HAS_BIAS, EPILOGUE, GELU_FORM, BLOCK_M, SUB_N, RES_EARLY,
                        stats_ptr, ROW_STATS, TF32_OUT)
    else:
        _epilogue_store(acc, res, off_m, off_n, M, N, bias_ptr, stride_bias, res_ptr, stride_rm,
                        o_desc, HAS_BIAS, EPILOGUE, GELU_FORM, BLOCK_M, SUB_N, RES_EARLY,
                        stats_ptr, ROW_STATS, TF32_OUT)


# M only sizes the descriptors and the tile count: not specialising it on M % 16 halves the
# compiles the autotuner does per (N, K, epilogue).
@triton.jit(do_not_specialize=["M"])
def _matmul_tma_kernel(
    a_ptr,  # A [M, K], row stride stride_am, unit column stride, 16-B aligned
    w_ptr,  # W [N, K] nn.Linear layout, row stride stride_wn, unit column stride, 16-B aligned
    bias_ptr,  # bias [N], any stride (unused unless HAS_BIAS)
    res_ptr,  # residual [M, N], row stride stride_rm (unused unless EPILOGUE adds it)
    out_ptr,  # out [M, N], row stride stride_om; may be res_ptr itself (in-place residual add)
    ln_ptr,  # A's row stats [M, 2, K/32] fp32 (_lnfold; unused unless LN_FOLD)
    colsum_ptr,  # fp32 [N]: sum over k of W (unused unless LN_FOLD)
    stats_ptr,  # out's row stats [M, 2, N/32] fp32, written (unused unless ROW_STATS)
    ws_ptr,  # fp32 tail-split workspace, [tail tiles, split, BLOCK_M*BLOCK_N] (unused unless split)
    cnt_ptr,  # int32 arrival counter per tail tile, all 0 (split_reduce; unused unless split)
    ln_eps,  # the folded layernorm's eps (unused unless LN_FOLD)
    M, N, K,  # GEMM sizes
    stride_am, stride_wn, stride_bias, stride_rm, stride_om,
    HAS_BIAS: tl.constexpr,
    EPILOGUE: tl.constexpr,  # one of EPILOGUES
    GELU_FORM: tl.constexpr,  # "gelu" epilogues' form: _gelu.gelu_form(out dtype)
    LN_FOLD: tl.constexpr,  # A is a layernorm's raw input, W its folded weights (_lnfold)
    LN_CP2: tl.constexpr,  # K / 32 rounded up to a power of 2 (LN_FOLD)
    ROW_STATS: tl.constexpr,  # also store out's row stats for the next GEMM's LN_FOLD (_lnfold)
    NUM_SMS: tl.constexpr,  # SM count (programs launched: PER_SM per SM, fewer when fewer tiles)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,  # row tiles per group of the tile order (L2 reuse)
    EPI_SUBTILE: tl.constexpr,  # store the output tile as two [BLOCK_M, BLOCK_N/2] halves
    WARP_SPEC: tl.constexpr,  # warp-specialise the tile loop (TMA producer / wgmma consumers)
    FLATTEN: tl.constexpr,  # flatten tile and K loops into one pipelined loop (not with WARP_SPEC)
    PER_SM: tl.constexpr,  # programs per SM (the tile loop's stride is NUM_SMS * PER_SM)
    RES_EARLY: tl.constexpr,  # load the residual tile before the K loop (its latency hidden there)
    STAGGER: tl.constexpr,  # SM cycles the second program of each SM waits at start (PER_SM=2)
    TAIL_SPLIT: tl.constexpr,  # most shares of K per tile of the last round (tail_split; 1: off)
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
    PRECISION: tl.constexpr = "ieee",  # tl.dot input_precision: "tf32" for fp32 operands (as the
    # pointer kernel, 16-bit launches pass "ieee", which their dots ignore)
    TF32_OUT: tl.constexpr = False,  # fp32 out stored rounded to TF32 (_tiles.tf32_rounded)
):
    pdl_start(PDL)
    _stagger_start(STAGGER, NUM_SMS)
    tl.static_assert(not (WARP_SPEC and EPI_SUBTILE), "WARP_SPEC needs EPI_SUBTILE=False on sm_90")
    SUB_N: tl.constexpr = BLOCK_N // 2 if EPI_SUBTILE else BLOCK_N
    a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[stride_am, 1],
                                       block_shape=[BLOCK_M, BLOCK_K])
    w_desc = tl.make_tensor_descriptor(w_ptr, shape=[N, K], strides=[stride_wn, 1],
                                       block_shape=[BLOCK_N, BLOCK_K])
    o_desc = tl.make_tensor_descriptor(out_ptr, shape=[M, N], strides=[stride_om, 1],
                                       block_shape=[BLOCK_M, SUB_N])

    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    PROGRAMS: tl.constexpr = NUM_SMS * PER_SM
    # Tail split (`tail_split`, same arithmetic): the last round's tiles leave the tile loop and
    # are summed in `split` shares of K by the split loop below.
    if TAIL_SPLIT > 1:
        tail = num_tiles % PROGRAMS
        split = tl.minimum(tl.minimum(PROGRAMS // tl.maximum(tail, 1), TAIL_SPLIT), k_tiles // 2)
        split = tl.where(tail > 0, tl.maximum(split, 1), 1)
        whole_tiles = tl.where(split > 1, num_tiles - tail, num_tiles)
    else:
        split = 1
        whole_tiles = num_tiles
    # The epilogue keeps its own tile counter: with the flattened loop the compiler may overlap
    # the next tile's loads with this tile's epilogue, and a separate counter keeps them independent.
    tile_id_c = tl.program_id(0) - PROGRAMS
    for tile_id in tl.range(tl.program_id(0), whole_tiles, PROGRAMS, flatten=FLATTEN,
                            warp_specialize=WARP_SPEC):
        pid_m, pid_n = grouped_tile(tile_id, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        off_am = pid_m * BLOCK_M
        off_wn = pid_n * BLOCK_N
        # Per K step: TMA reads BLOCK_M*BLOCK_K + BLOCK_N*BLOCK_K elements (zero past K),
        # then 2*BLOCK_M*BLOCK_N*BLOCK_K FLOPs on wgmma into the fp32 accumulator.
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        res = acc  # placeholder unless the residual is loaded here
        if RES_EARLY and (EPILOGUE == "residual" or EPILOGUE == "gelu_residual"):
            res = _load_residual(res_ptr, stride_rm, off_am, off_wn, M, N, BLOCK_M, BLOCK_N)
        for ki in range(k_tiles):
            a = a_desc.load([off_am, ki * BLOCK_K])  # [BLOCK_M, BLOCK_K]
            w = w_desc.load([off_wn, ki * BLOCK_K])  # [BLOCK_N, BLOCK_K]
            acc = tl.dot(a, w.T, acc, input_precision=PRECISION)

        tile_id_c += PROGRAMS
        pid_m, pid_n = grouped_tile(tile_id_c, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        _tile_epilogue(acc, res, pid_m * BLOCK_M, pid_n * BLOCK_N, M, N, K, bias_ptr, stride_bias,
                       res_ptr, stride_rm, o_desc, ln_ptr, colsum_ptr, ln_eps, stats_ptr,
                       HAS_BIAS, EPILOGUE, GELU_FORM, LN_FOLD, LN_CP2, ROW_STATS,
                       BLOCK_M, BLOCK_N, EPI_SUBTILE, RES_EARLY, TF32_OUT)

    if TAIL_SPLIT > 1:
        # The last round: unit u = (tail tile u // split, share u % split of its K steps), at most
        # one unit per program (tail * split <= PROGRAMS). Partials meet in the workspace; the
        # last program of each tile to arrive sums them in share order and runs the epilogue.
        for unit in range(tl.program_id(0), (num_tiles - whole_tiles) * split, PROGRAMS):
            t = unit // split
            share = unit - t * split
            pid_m, pid_n = grouped_tile(whole_tiles + t, M, N, BLOCK_M, BLOCK_N, GROUP_M)
            off_m = pid_m * BLOCK_M
            off_n = pid_n * BLOCK_N
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            # balanced shares of the K steps (tail_split): 9 steps in 4 -> 2, 2, 2, 3
            for ki in tl.range(share * k_tiles // split, (share + 1) * k_tiles // split, num_stages=2):
                a = a_desc.load([off_m, ki * BLOCK_K])
                w = w_desc.load([off_n, ki * BLOCK_K])
                acc = tl.dot(a, w.T, acc, input_precision=PRECISION)
            tile_ws = ws_ptr + t.to(tl.int64) * split * (BLOCK_M * BLOCK_N)
            acc, last = split_reduce(acc, tile_ws, cnt_ptr + t, share, split, BLOCK_M, BLOCK_N)
            if last:
                _tile_epilogue(acc, acc, off_m, off_n, M, N, K, bias_ptr, stride_bias,
                               res_ptr, stride_rm, o_desc, ln_ptr, colsum_ptr, ln_eps, stats_ptr,
                               HAS_BIAS, EPILOGUE, GELU_FORM, LN_FOLD, LN_CP2, ROW_STATS,
                               BLOCK_M, BLOCK_N, EPI_SUBTILE, False, TF32_OUT)


_KEY = ["M", "N", "K", "EPILOGUE", "HAS_BIAS", "LN_FOLD", "ROW_STATS"]
_PRUNE = {"early_config_prune": prune_by_smem}
_ALL_CONFIGS = TMA_CONFIGS + TF32_CONFIGS
_matmul_tma = autotune(_ALL_CONFIGS, key=_KEY, prune_configs_by=_PRUNE)(_matmul_tma_kernel)
# out aliasing residual is never autotuned in place: _common.tune_apart (see the launcher).


# ------------------------------------------------------------------------------------ launcher
def _alloc(size: int, alignment: int, stream: int | None) -> torch.Tensor:
    """Global scratch for device-side descriptors (128 B per descriptor per program)."""
    return torch.empty(size, dtype=torch.int8, device="cpu" if INTERPRETER else "cuda")


def _ensure_allocator() -> None:
    """Install `_alloc` unless the caller already set an allocator.

    triton keeps the allocator in a ContextVar, so a new thread starts with none: check per launch
    (one ContextVar read) instead of once per process.
    """
    from triton.runtime import _allocation

    current = getattr(_allocation, "_allocator", None)
    if current is None or isinstance(current.get(), _allocation.NullAllocator):
        triton.set_allocator(_alloc)


@functools.lru_cache(maxsize=None)
def _device_ok(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


@functools.lru_cache(maxsize=None)
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _rows2d(t: torch.Tensor) -> torch.Tensor | None:
    """`t` as a 2-D [rows, cols] view TMA can address (unit column stride, 16-B aligned base and
    row stride), or None."""
    if t.dim() == 3:
        if t.shape[0] > 1 and t.stride(0) != t.shape[1] * t.stride(1):
            return None
        t = t.reshape(-1, t.shape[-1])  # a view, given the stride check
    if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1):
        return None
    es = t.element_size()
    if t.data_ptr() % 16 or (t.stride(0) * es) % 16 or (t.shape[1] * es) % 16:
        return None
    return t


def tma_eligible(a: object, w: object, bias: object = None, *, epilogue: str = "none",
                 residual: object = None, out: object = None, precision: str = "ieee") -> bool:
    """True when `matmul_tma` can run these arguments; False (never raises) otherwise. fp32
    operands only with precision "tf32" (16-bit ones take any: it applies to fp32 dots only)."""
    if INTERPRETER:
        pass
    elif not (isinstance(a, torch.Tensor) and a.is_cuda and _device_ok(a.device.index or 0)):
        return False
    if epilogue not in EPILOGUES or (residual is not None) != (epilogue in _RESIDUAL_EPILOGUES):
        return False
    tensors = [t for t in (a, w, bias, residual, out) if t is not None]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if not isinstance(a, torch.Tensor) or a.dim() not in (2, 3) or w.dim() != 2:
        return False
    if any(t.dtype != a.dtype or t.device != a.device for t in tensors):
        return False
    if a.dtype not in _TMA_DTYPES and not (a.dtype == torch.float32 and precision == _TF32_PRECISION):
        return False
    K, N = a.shape[-1], w.shape[0]
    if w.shape[1] != K or K == 0 or K % 8 or N % 8 or (bias is not None and tuple(bias.shape) != (N,)):
        return False
    out_shape = (*a.shape[:-1], N)
    for t in (residual, out):
        if t is not None and (tuple(t.shape) != out_shape or _rows2d(t) is None):
            return False
    return _rows2d(a) is not None and _rows2d(w) is not None


def matmul_tma(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
               epilogue: str = "none", residual: torch.Tensor | None = None,
               out: torch.Tensor | None = None, ln: LNFold | None = None,
               row_stats: torch.Tensor | None = None, precision: str = "ieee",
               tf32_out: bool = False) -> torch.Tensor:
    """out = epilogue(a @ w.T + bias) on the Hopper TMA path; see `matmul` for the contract.
    fp32 operands need precision="tf32" (TF32 wgmma, which drops the low 13 mantissa bits of
    what it loads: exact for operands that hold TF32 values, as `matmul(..., tf32_exact=True)`
    promises, truncated otherwise); 16-bit ones ignore `precision`. tf32_out: `matmul`'s.

    Raises VitbenchError when the arguments are wrong or not eligible (`tma_eligible`).
    `out` may alias `residual` (same view) for an in-place residual add.
    """
    if epilogue not in EPILOGUES:
        raise VitbenchError(f"epilogue must be one of {EPILOGUES}, got {epilogue!r}")
    a = check_tensor("a", a, ndim=(2, 3))
    w = check_tensor("w", w, ndim=2)
    if bias is not None:
        bias = check_tensor("bias", bias, ndim=1, contiguous_last=False)
    if epilogue in _RESIDUAL_EPILOGUES and residual is None:
        raise VitbenchError(f"epilogue {epilogue!r} needs a residual tensor")
    if epilogue not in _RESIDUAL_EPILOGUES and residual is not None:
        raise VitbenchError(f"residual given but epilogue {epilogue!r} does not add it")
    dtype = check_same_dtype(a=a, w=w, bias=bias, residual=residual)
    if not tma_eligible(a, w, bias, epilogue=epilogue, residual=residual, out=out, precision=precision):
        raise VitbenchError(
            "matmul_tma: arguments not eligible for the TMA path (needs sm_90+, fp16/bf16 or fp32 "
            "with precision='tf32', "
            "K > 0 and K, N multiples of 8, rows with unit column stride and 16-byte aligned base/row "
            f"stride); got a {tuple(a.shape)} {a.dtype}, w {tuple(w.shape)}; use matmul()")
    N, K = w.shape
    out_shape = (*a.shape[:-1], N)
    inplace = False
    if out is None:
        out = torch.empty(out_shape, dtype=dtype, device=a.device)
    else:
        inplace = (residual is not None and out.data_ptr() == residual.data_ptr()
                   and out.stride() == residual.stride())
        others = {"a": a, "w": w, "bias": bias, "residual": None if inplace else residual}
        out = check_out(out, out_shape, dtype, others)
    a2, w2, o2 = _rows2d(a), _rows2d(w), _rows2d(out)
    r2 = _rows2d(residual) if residual is not None else o2
    M = a2.shape[0]
    ln_args = _ln_args(ln, row_stats, M, N, K, a.device)
    if M == 0 or N == 0:
        return out
    _ensure_allocator()
    sms = _INTERPRETER_SMS if INTERPRETER else _num_sms(a.device.index or 0)
    kernel = _matmul_tma
    if isinstance(kernel, _common._FixedConfig):
        sizes = tail_scratch_sizes(M, N, K, sms, [kernel.config])
    else:
        sizes = _autotune_scratch_sizes(M, N, K, sms, _TAIL)
    ws, counters = split_scratch(*sizes, a.device)

    def launch(dst: torch.Tensor) -> None:
        kernel[lambda meta: grid(M, N, K, sms, meta)](
            a2, w2, bias if bias is not None else w2, r2, dst, *ln_args[:3], ws, counters, ln_args[3],
            M, N, K,
            a2.stride(0), w2.stride(0), bias.stride(0) if bias is not None else 0,
            r2.stride(0), dst.stride(0),
            HAS_BIAS=bias is not None, EPILOGUE=epilogue, GELU_FORM=gelu_form(dtype), NUM_SMS=sms,
            PRECISION=_TF32_PRECISION if dtype == torch.float32 else "ieee", TF32_OUT=bool(tf32_out),
            **ln_args[4], **launch_opts(),
        )

    if inplace:  # autotuned out of place first (_common.tune_apart), then run in place
        key = ("tma", M, N, K, epilogue, bias is not None, dtype, str(a.device), ln is not None,
               row_stats is not None)
        _common.tune_apart(key, kernel, lambda: launch(_common.scratch_like(o2)))
    launch(o2)
    return out
