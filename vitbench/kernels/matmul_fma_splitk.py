"""Split-K for the exact-fp32 CUDA-core GEMM (kernels/matmul_fma.py): out = epi(A @ W^T + bias)
as SPLIT partial products over shares of K, then their sum.

Why: at batch 1 (M = 197 rows) the ViT-B/16 GEMMs have few output tiles for 132 SMs (128x128
tiles: QKV 36, FC1 48, out-projection and FC2 12), and each walks all of K alone; the H200
profile of 2026-11-28 showed them at 8-12 TFLOP/s (cuBLAS ~16) and the fp32 forward at 3.88 ms
against HF's 3.76, where batches 8-256 were 1.01-1.07x faster than HF.

Pass 1 (`_fma_splitk_kernel`, Gluon): grid (output tiles, SPLIT). Program (tile, s) runs
matmul_fma's tile loop (`_fma_tile`, the same code) over K range [s * K_SHARE, min(K, (s + 1) *
K_SHARE)) and stores its raw fp32 tile (no bias, no epilogue) into a workspace [SPLIT, M, N].
K_SHARE is a whole number of the loop's trips (2 * BLOCK_K, `FmaSplit.plan`), and SPLIT =
cdiv(K, K_SHARE): no share is empty.
Pass 2: matmul_splitk.py's `_splitk_sum_kernel` (Triton) sums the SPLIT partials of each element
in a fixed order (the same bits every run; no atomics), then adds the bias, applies the exact
(erf) GELU or adds the residual; `out` may be the residual itself (same view): each element is
read and then written by one program.
Numerics: every product and sum is fp32 (FFMA in k order within a share, then the shares in
order): exact fp32 arithmetic like the unsplit kernel, in another summation order.

Candidates (`candidates`): two base configs of matmul_fma (`BASES`, with the programs of each that
an SM holds at once: registers and shared memory of the offline sm_90 build), and per base the
largest SPLIT of `SPLITS` whose tiles * SPLIT fit one full round of resident programs, and the
largest that fits half a round (for the capped 128x128: one 8-warp program per SM), each with
shares of at least MIN_K_TILES K tiles and a workspace within matmul_splitk.MAX_WS_BYTES. Shapes
whose tiles fill more than half a round get none (132 SMs: batch 8's QKV and FC1, every GEMM from
batch 16).
vitbench.kernels.matmul times them beside the unsplit configs and the pointer kernel, on the first
call of each shape, unless VITBENCH_FMA_SPLIT_K=0 (on by default since its GPU run on 2026-11-28:
ViT-B/16 fp32 at batch 1 went from 3.88 to 2.06 ms on an H200).
Capture: the workspace is allocated per call (torch's caching allocator; inside a CUDA graph
capture from the graph's pool), as matmul_splitk does.

Cost of a call: matmul_cost, plus 8 * SPLIT * M * N bytes of workspace traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from vitbench.kernels._env import env_flag
from vitbench.kernels._gelu import gelu_form
from vitbench.kernels._pdl import launch_opts
from vitbench.kernels.matmul_fma import AVAILABLE, GROUP_M, _rows2d
from vitbench.kernels.matmul_fma import CANDIDATES as FMA_CANDIDATES
from vitbench.kernels.matmul_splitk import MAX_WS_BYTES, _splitk_sum_kernel

if AVAILABLE:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl

    from vitbench.kernels.matmul_fma import _fma_tile

SPLIT_K_ENV = "VITBENCH_FMA_SPLIT_K"
KERNEL_NAME = "_fma_splitk_kernel"  # pass 1, as profilers show it (pass 2: _splitk_sum_kernel)
# base config (a matmul_fma.CANDIDATES name) -> its programs resident per SM: the capped 128x128x8
# (256 threads at 128 registers, 16 KB shared memory) 2; 64x64x8 on 2 warps (64 threads at
# <= 168 registers, 8 KB) 6. tests/test_kernels_matmul_fma_splitk.py checks these against the
# offline sm_90 build of the split kernel.
BASES = {"fma-128x128x8-w8-r128": 2, "fma-64x64x8-w2": 6}
SPLITS = (2, 3, 4, 6, 8, 12, 16)
# K tiles per share, at least: each share's partial tile is written and read back once (8 bytes
# per output element), against 2 * K_SHARE FLOPs per element: 64 K per share keeps that traffic
# at 16 FLOP per workspace byte (about 1.3 TB/s of L2 traffic at 20 TFLOP/s)
MIN_K_TILES = 8
SUM_BLOCK_M, SUM_BLOCK_N = 16, 128  # pass 2's blocks: 78 programs for a 197 x 768 output


def fma_split_k_setting() -> bool:
    """VITBENCH_FMA_SPLIT_K: 1 adds this module's split-K configs to the exact fp32 GEMMs' timed
    candidates (with VITBENCH_FMA=1, for shapes of few tiles): the default; 0 leaves them out."""
    return env_flag(SPLIT_K_ENV, "time split-K configs of the CUDA-core Gluon GEMM for exact fp32",
                    default=True)


@dataclass(frozen=True)
class FmaSplit:
    """A matmul_fma config (`base`, a CANDIDATES name) run as `split` shares of K."""
    base: str
    split: int

    @property
    def name(self) -> str:
        return f"{self.base}-s{self.split}"

    @property
    def config(self) -> tuple:
        return FMA_CANDIDATES[self.base]

    def plan(self, K: int) -> tuple[int, int]:
        """(K_SHARE, shares) for K: K_SHARE about K / split in whole trips of the kernel's loop
        (2 * BLOCK_K), shares = cdiv(K, K_SHARE) <= split, none empty (one for K = 0)."""
        step = 2 * self.config[2]
        k_share = triton.cdiv(triton.cdiv(max(K, 1), step), self.split) * step
        return k_share, max(triton.cdiv(K, k_share), 1)


# every config vitbench.kernels.matmul may choose, by the name its choice is recorded under
CANDIDATES = {c.name: c for c in (FmaSplit(b, s) for b in BASES for s in SPLITS)}


def _largest(base: str, tiles: int, M: int, N: int, K: int, programs: int) -> FmaSplit | None:
    """The FmaSplit of `base` with the largest SPLIT whose tiles * SPLIT <= programs, shares of
    exactly SPLIT (none dropped by the rounding to whole trips) of at least MIN_K_TILES K tiles,
    and a workspace within MAX_WS_BYTES; None if no SPLIT qualifies."""
    for s in sorted(SPLITS, reverse=True):
        c = FmaSplit(base, s)
        k_share, shares = c.plan(K)
        if (tiles * s <= programs and shares == s and k_share >= MIN_K_TILES * c.config[2]
                and 4 * s * M * N <= MAX_WS_BYTES):
            return c
    return None


def candidates(M: int, N: int, K: int, sms: int) -> list[FmaSplit]:
    """The split configs worth timing for an [M, K] x [N, K]^T GEMM on `sms` SMs: per base of
    BASES, the largest SPLIT filling one round of its resident programs (BASES[base] * sms) and
    the largest filling half a round (see the module docstring). None when the tiles alone fill
    more than half a round."""
    out: list[FmaSplit] = []
    for base, per_sm in BASES.items():
        bm, bn = FMA_CANDIDATES[base][:2]
        tiles = triton.cdiv(M, bm) * triton.cdiv(N, bn)
        for programs in (per_sm * sms, per_sm * sms // 2):
            c = _largest(base, tiles, M, N, K, programs)
            if c is not None and c not in out:
                out.append(c)
    return out


if AVAILABLE:

    @gluon.jit
    def _fma_splitk_kernel(a_ptr, w_ptr, ws_ptr, M, N, K, k_share, stride_am, stride_wn,
                           BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
                           SPT_M: gl.constexpr, SPT_N: gl.constexpr, TPW_M: gl.constexpr,
                           WPC_M: gl.constexpr, GROUP: gl.constexpr, num_warps: gl.constexpr):
        # program (tile, s): the tile's product over K range [s * k_share, min(K, (s + 1) * k_share)),
        # stored raw into share s's plane of the fp32 workspace [SPLIT, M, N]
        pid_k = gl.program_id(1)
        k_start = pid_k * k_share
        acc, pid_m, pid_n = _fma_tile(a_ptr + k_start, w_ptr + k_start, M, N,
                                      gl.minimum(K - k_start, k_share), stride_am, stride_wn,
                                      gl.program_id(0), BLOCK_M, BLOCK_N, BLOCK_K, SPT_M, SPT_N,
                                      TPW_M, WPC_M, GROUP, num_warps)
        acc_l: gl.constexpr = acc.type.layout
        om = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, acc_l))
        on = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, acc_l))
        mask = (gl.expand_dims(om, 1) < M) & (gl.expand_dims(on, 0) < N)
        rows = pid_k.to(gl.int64) * M + om
        gl.store(ws_ptr + gl.expand_dims(rows * N, 1) + gl.expand_dims(on, 0), acc, mask=mask)


def _partials(a2: torch.Tensor, w2: torch.Tensor, ws: torch.Tensor, k_share: int, config: tuple) -> None:
    """Pass 1: ws[s] = a2[:, share s] @ w2[:, share s]^T for s < ws.shape[0] (shares of k_share)."""
    bm, bn, bk, spt_m, spt_n, tpw_m, wpc_m, warps, maxnreg = config
    M, K = a2.shape
    N = w2.shape[0]
    _fma_splitk_kernel[(triton.cdiv(M, bm) * triton.cdiv(N, bn), ws.shape[0])](
        a2, w2, ws, M, N, K, k_share, a2.stride(0), w2.stride(0),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPT_M=spt_m, SPT_N=spt_n, TPW_M=tpw_m, WPC_M=wpc_m,
        GROUP=GROUP_M, num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))


def matmul_fma_splitk(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
                      config: FmaSplit, epilogue: str = "none", residual: torch.Tensor | None = None,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """out = epilogue(a @ w.T + bias) as `config`'s shares of K, then their sum and the epilogue
    ("none", "gelu", "residual"; `out` may be the residual, same view). As for matmul_fma, the
    caller checks `matmul_fma.fma_eligible` and the arguments (vitbench.kernels.matmul)."""
    if out is None:
        out = torch.empty((*a.shape[:-1], w.shape[0]), dtype=a.dtype, device=a.device)
    a2, w2, o2 = _rows2d(a), _rows2d(w), _rows2d(out)
    r2 = _rows2d(residual) if residual is not None else o2  # placeholder pointer when unused
    M, K = a2.shape
    N = w2.shape[0]
    if M == 0:
        return out
    k_share, shares = config.plan(K)
    ws = torch.empty((shares, M, N), dtype=torch.float32, device=a.device)
    _partials(a2, w2, ws, k_share, config.config)
    _splitk_sum_kernel[(triton.cdiv(M, SUM_BLOCK_M), triton.cdiv(N, SUM_BLOCK_N))](
        ws, bias if bias is not None else w2, r2, o2, M, N, K, M, M * N,
        bias.stride(0) if bias is not None else 0, 0, r2.stride(0), r2.stride(1),
        0, o2.stride(0), o2.stride(1),
        HAS_BIAS=bias is not None, EPILOGUE=epilogue, GELU_FORM=gelu_form(torch.float32),
        SPLIT=shares, BLOCK_M=SUM_BLOCK_M, BLOCK_N=SUM_BLOCK_N, **launch_opts())
    return out
