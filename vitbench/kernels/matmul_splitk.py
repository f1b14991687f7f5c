"""Two-pass split-K GEMM: out = epilogue(A @ W^T + bias [, residual]) as partial sums, then a sum.

Pass 1 (`_splitk_partial_kernel`): SPLIT programs per output tile, each multiplying its share of K,
store fp32 partial tiles to a workspace [SPLIT, M, N]. Pass 2 (`_splitk_sum_kernel`): small blocks
over the whole output sum the SPLIT partials in a fixed order (the same bits every run) and run
matmul.py's epilogue (bias, GELU, residual) before the one rounding to the output dtype.

Why: the second launch of a row split (kernels/_rowsplit.py) is a GEMM of few rows. ViT-B/16 at
batch 32 on an H100: FC2's last 672 rows ([672, 3072] x [3072, 768], 18 tiles of 128x256 for 132
SMs) took 16.8 us on the pointer kernel's best config (64x128, in-kernel split-K 4), 3.2 GFLOP at
190 TFLOP/s, where its first 5,632 rows ran at 636. matmul.py's in-kernel split-K leaves the sum to
the tile's last-arriving program, one SM reading every partial; here the sum is spread over the
whole GPU, and pass 1 can use the large tiles that read the fewest bytes from L2 per FLOP.
Costs: one more launch, and the workspace written once and read once (SPLIT * M * N * 4 bytes,
mostly in L2). `candidates` proposes, per shape, the tile shapes whose tiles times some SPLIT of
at least 2 fill at most one round of the SMs; matmul() times them against its usual kernel on the
first call of each shape (`choose`) and runs this only where it measured faster.

Cost of a call: matmul_cost, plus 8 * SPLIT * M * N bytes of workspace traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import triton
import triton.language as tl

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import _dispatch, _rowsplit
from vitbench.kernels._common import _sm_count
from vitbench.kernels._env import env_flag
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import dot_k_loop, grouped_tile
from vitbench.kernels._gelu import gelu_form
from vitbench.kernels.matmul import _epilogue, checked_args

TWO_PASS_ENV = "VITBENCH_TWO_PASS"
MAX_WS_BYTES = 64 << 20  # workspace per call, at most
MIN_STEPS = 3  # BLOCK_K steps per share of K, at least
SUM_BLOCK_M, SUM_BLOCK_N = 32, 128  # pass 2's blocks


@triton.jit
def _splitk_partial_kernel(
    a_ptr,  # A [M, K] viewed as rows m -> (m // rows_inner, m % rows_inner), any strides
    w_ptr,  # W [N, K] nn.Linear layout, any strides; read as W^T [K, N]
    ws_ptr,  # fp32 workspace [SPLIT, M, N], contiguous: this program writes its tile of share pid_k
    M, N, K, rows_inner,
    stride_a0, stride_a1, stride_ak,  # A: leading index, row within it, K
    stride_wn, stride_wk,  # W: N, K
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,  # tile rows per group (grouped tile order)
    SPLIT: tl.constexpr,  # programs per output tile (grid axis 1), each over a share of K
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks in the main loop
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
):
    pdl_start(PDL)
    pid_m, pid_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    k_share = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT) * BLOCK_K  # whole BLOCK_K steps
    k_len = tl.minimum(K - pid_k * k_share, k_share)  # <= 0: an empty share, stores zeros
    k0 = (pid_k * k_share).to(tl.int64)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm_ld = rm % M  # out-of-range rows/cols read valid ones; masked at the store
    rn_ld = rn % N
    offs_k = tl.arange(0, BLOCK_K)
    row_a = (rm_ld // rows_inner).to(tl.int64) * stride_a0 + (rm_ld % rows_inner).to(tl.int64) * stride_a1
    a_ptrs = a_ptr + row_a[:, None] + (k0 + offs_k[None, :]) * stride_ak
    w_ptrs = w_ptr + rn_ld.to(tl.int64)[None, :] * stride_wn + (k0 + offs_k[:, None]) * stride_wk
    acc = dot_k_loop(a_ptrs, w_ptrs, offs_k, k_len, stride_ak, stride_wk,
                     BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, "ieee")
    ws = ws_ptr + (pid_k.to(tl.int64) * M + rm.to(tl.int64)[:, None]) * N + rn[None, :]
    tl.store(ws, acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _splitk_sum_kernel(
    ws_ptr,  # fp32 workspace [SPLIT, M, N] from _splitk_partial_kernel
    bias_ptr, res_ptr, out_ptr,  # as matmul.py's kernel (bias/res unused unless asked for)
    M, N, K, rows_inner,
    plane,  # M * N: elements of one share's partials in the workspace
    stride_bias,
    stride_r0, stride_r1, stride_rn,  # residual: leading index, row, N
    stride_o0, stride_o1, stride_on,  # out: leading index, row, N
    HAS_BIAS: tl.constexpr, EPILOGUE: tl.constexpr, GELU_FORM: tl.constexpr,
    SPLIT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_start(PDL)
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    ws = ws_ptr + rm.to(tl.int64)[:, None] * N + rn[None, :]  # share 0's partials of this block
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for s in tl.static_range(SPLIT):  # fixed order: the same bits every run
        acc += tl.load(ws, mask=mask, other=0.0)
        ws += plane  # pointer steps of one share: no SPLIT * M * N product to overflow int32
    _epilogue(acc, rm, rn, rn % N, M, N, rows_inner, bias_ptr, stride_bias, res_ptr, stride_r0,
              stride_r1, stride_rn, out_ptr, stride_o0, stride_o1, stride_on, HAS_BIAS, EPILOGUE,
              GELU_FORM, ws_ptr, ws_ptr, ws_ptr, 0.0, K, 0, False, 1, False, False, BLOCK_M, BLOCK_N)


@dataclass(frozen=True)
class TwoPass:
    """Pass 1's tile (BLOCK_M x BLOCK_N x BLOCK_K, pipeline stages, warps) and programs per tile."""
    bm: int
    bn: int
    bk: int
    stages: int
    warps: int
    split: int

    @property
    def tag(self) -> str:
        return f"2pass {self.bm}x{self.bn}x{self.bk} s{self.stages} w{self.warps} k{self.split}"


# Pass 1's tiles, largest first (matmul.py's Hopper GEMM configs of these shapes). The interpreter
# runs small ones (tests force them).
TILES = [(16, 32, 16, 2, 4)] if INTERPRETER else [
    (128, 256, 64, 3, 8),
    (128, 128, 64, 4, 8),
    (64, 256, 64, 4, 4),
]


def two_pass_setting() -> bool:
    """VITBENCH_TWO_PASS as a bool: unset, "" or "1" -> True; "0" -> False; else VitbenchError."""
    return env_flag(TWO_PASS_ENV, "time a two-pass split-K for the second GEMM of a row split",
                    default=True)


def candidates(M: int, N: int, K: int, sms: int) -> list[TwoPass]:
    """Per tile shape of TILES: the largest SPLIT >= 2 with tiles * SPLIT <= sms, shares of at
    least MIN_STEPS BLOCK_K steps (the last may be shorter, never empty) and a workspace within
    MAX_WS_BYTES.
    Shapes with a round of tiles or more get none (their tiles alone fill the SMs)."""
    out = []
    for bm, bn, bk, stages, warps in TILES:
        tiles = triton.cdiv(M, bm) * triton.cdiv(N, bn)
        steps = triton.cdiv(K, bk)
        split = min(sms // tiles, steps // MIN_STEPS, MAX_WS_BYTES // max(4 * M * N, 1))
        while split >= 2 and triton.cdiv(steps, triton.cdiv(steps, split)) < split:
            split -= 1  # uneven shares: the same share length with one program fewer
        if split >= 2:
            out.append(TwoPass(bm, bn, bk, stages, warps, split))
    return out


def _check_config(c: object) -> None:
    """VitbenchError unless `c` is a TwoPass that can launch: power-of-2 tiles with BLOCK_K >= 16
    (tl.dot's minimum), warps a power of 2, stages and split positive integers."""
    if not isinstance(c, TwoPass):
        raise VitbenchError(f"config must be a TwoPass, got {type(c).__name__}: {c!r}")
    ints = (c.bm, c.bn, c.bk, c.stages, c.warps, c.split)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ints):
        raise VitbenchError(f"TwoPass fields must be integers >= 1, got {c!r}")
    if any(v & (v - 1) for v in (c.bm, c.bn, c.bk, c.warps)) or min(c.bm, c.bn, c.bk) < 16:
        raise VitbenchError(f"TwoPass tiles and warps must be powers of 2, tiles at least 16: {c!r}")


def matmul_splitk(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
                  config: TwoPass, epilogue: str = "none", residual: torch.Tensor | None = None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """matmul() (16-bit or fp32 "ieee"; a [..., K] 2-D or 3-D, w [N, K]) as two passes with
    `config`: SPLIT partial products into an fp32 workspace, then their sum and the epilogue.
    `out` may alias `residual` (same view): each output element is read and written by one
    program of pass 2."""
    _check_config(config)
    a, w, bias, residual, out, dtype, _, _ = checked_args(a, w, bias, epilogue, residual, "ieee", out)
    K, N = a.shape[-1], w.shape[0]
    M = out.numel() // N if N else 0
    if M == 0 or N == 0:
        return out
    c = config
    ws = torch.empty((c.split, M, N), dtype=torch.float32, device=a.device)
    rows_inner = a.shape[1] if a.dim() == 3 else M
    rows = lambda t: (t.stride(0), t.stride(1)) if t.dim() == 3 else (0, t.stride(0))  # noqa: E731
    opts = launch_opts()
    meta = {} if INTERPRETER else {"num_warps": c.warps, "num_stages": c.stages}
    _splitk_partial_kernel[(triton.cdiv(M, c.bm) * triton.cdiv(N, c.bn), c.split)](
        a, w, ws, M, N, K, rows_inner, *rows(a), a.stride(-1), w.stride(0), w.stride(1),
        BLOCK_M=c.bm, BLOCK_N=c.bn, BLOCK_K=c.bk, GROUP_M=8, SPLIT=c.split, EVEN_K=K % c.bk == 0,
        **opts, **meta)
    res = residual if residual is not None else out  # placeholder pointer when unused
    _splitk_sum_kernel[(triton.cdiv(M, SUM_BLOCK_M), triton.cdiv(N, SUM_BLOCK_N))](
        ws, bias if bias is not None else w, res, out, M, N, K, rows_inner, M * N,
        bias.stride(0) if bias is not None else 0, *rows(res), res.stride(-1),
        *rows(out), out.stride(-1),
        HAS_BIAS=bias is not None, EPILOGUE=epilogue, GELU_FORM=gelu_form(dtype),
        SPLIT=c.split, BLOCK_M=SUM_BLOCK_M, BLOCK_N=SUM_BLOCK_N, **opts)
    return out


def choose(whole: Callable[..., torch.Tensor], a: torch.Tensor, w: torch.Tensor,
           bias: torch.Tensor | None, epilogue: str, residual: torch.Tensor | None,
           out: torch.Tensor | None) -> TwoPass | None:
    """The TwoPass to run this 16-bit call with, or None for `whole` (matmul's usual kernel):
    `candidates` of its shape, each timed against `whole` on the first call of the shape (on
    scratch outputs, as kernels/_rowsplit.py times its splits), then cached. None without a CUDA
    device, in the interpreter, with VITBENCH_TWO_PASS=0, for an unusable call (the usual kernel
    reports it) and during a graph capture of an untimed shape."""
    if not (_rowsplit._timed_here(a) and two_pass_setting()) or a.numel() == 0 or w.numel() == 0:
        return None
    M, N, K = a.numel() // a.shape[-1], w.shape[0], a.shape[-1]
    configs = candidates(M, N, K, _sm_count(a.device.index or 0))
    if not configs:
        return None
    inplace = _rowsplit.in_place(residual, out)
    # the layout of matmul's _route key (vitbench.bench.metadata.kernel_choices unpacks it)
    key = ("matmul-2pass", tuple(a.shape), a.stride(-2), N, a.dtype, epilogue, bias is not None,
           inplace, a.device, w.stride(0), None if out is None else out.stride(-2),
           None if residual is None else residual.stride(-2))
    hit = _dispatch.lookup(key)
    if hit is None:
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return None  # nothing can be timed inside a capture: whole, uncached
        res, scratch = _rowsplit.scratch_outputs(a, N, residual, out, inplace)
        kw = dict(epilogue=epilogue, residual=res, out=scratch)
        timed = {"whole": lambda: whole(a, w, bias, **kw)}
        for c in configs:
            timed[c.tag] = lambda c=c: matmul_splitk(a, w, bias, config=c, **kw)
        hit = _dispatch.fastest(key, timed)
    return next((c for c in configs if c.tag == hit), None)
