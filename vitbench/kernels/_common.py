"""Shared launcher helpers: input and output validation, memory overlap, row-kernel tiling, and
autotuning that also works in the interpreter."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import functools
import inspect
import os

import torch
import triton

from vitbench._backend import DEVICE, INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels._env import env_flag

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NAME_OF_DTYPE = {v: k for k, v in DTYPE_NAMES.items()}
# fp32 matrix products (tl.dot input_precision; 16-bit operands ignore it): "ieee" exact fp32 FMAs on
# the CUDA cores; "tf32" one TF32 tensor-core product (operands rounded to 10 mantissa bits);
# "tf32x3" and "bf16x3" three tensor-core products of a two-way operand split (hi + lo, ~21-22
# bits kept); "bf16x6" six bf16 products of a three-way split (hi + mid + lo holds all 24 bits of an
# fp32 operand; the three smallest cross terms are dropped). The split modes are triton's own
# (its F32DotTC / BF16DotTC passes).
PRECISIONS = ("ieee", "tf32", "tf32x3", "bf16x3", "bf16x6")


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return DTYPE_NAMES[name]
    except KeyError:
        raise VitbenchError(f"unknown dtype {name!r}; choose from {', '.join(DTYPE_NAMES)}") from None


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int | Iterable[int] | None = None,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
    contiguous_last: bool = True,
) -> torch.Tensor:
    """Validate one launcher argument; raise VitbenchError naming it when it is unusable."""
    if not isinstance(t, torch.Tensor):
        raise VitbenchError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != DEVICE.type:
        where = "CPU (Triton interpreter)" if INTERPRETER else "a CUDA device"
        raise VitbenchError(f"{name} is on {t.device}, but kernels here run on {where}")
    if t.dtype not in dtypes:
        allowed = ", ".join(NAME_OF_DTYPE.get(d, str(d)) for d in dtypes)
        raise VitbenchError(f"{name} has dtype {t.dtype}; expected one of {allowed}")
    if ndim is not None:
        allowed_nd = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed_nd:
            raise VitbenchError(
                f"{name} must have {' or '.join(map(str, allowed_nd))} dims, got shape {tuple(t.shape)}"
            )
    if contiguous_last and t.dim() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise VitbenchError(f"{name} must be contiguous in its last dim (strides {t.stride()})")
    return t


def _span(t: torch.Tensor) -> tuple[int, int]:
    """[first, last) byte addresses a tensor's elements may touch."""
    start = t.data_ptr()
    extent = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())) + 1
    return start, start + extent * t.element_size()


def overlaps(x: torch.Tensor, y: torch.Tensor) -> bool:
    """True when the memory of `x` and `y` may overlap (both non-empty); conservative: judged by
    address span, so interleaved-but-disjoint views count as overlapping."""
    if x.numel() == 0 or y.numel() == 0:
        return False
    (a0, a1), (b0, b1) = _span(x), _span(y)
    return a0 < b1 and b0 < a1


def check_out(
    out: object,
    shape: Sequence[int],
    dtype: torch.dtype | None,
    device: torch.device,
    *,
    contiguous: bool = False,
    contiguous_last: bool = True,
    name: str = "out",
    like: str = "",
    disjoint_from: dict[str, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Validate a caller-provided output buffer; raise VitbenchError naming it when unusable.

    Checks, in order: a tensor on the kernels' device type with `len(shape)` dims (and a
    contiguous last dim if `contiguous_last`), the exact `shape`, `dtype` (None: the caller
    checks it), full contiguity if `contiguous`, the same `device` as the inputs, and no memory
    overlap with any tensor of `disjoint_from` (name -> tensor; None entries are skipped).
    `like` names where the expected shape/dtype come from in messages, e.g. "x's".
    """
    out = check_tensor(name, out, ndim=len(shape), contiguous_last=contiguous_last)
    of = f"{like} " if like else ""
    if tuple(out.shape) != tuple(shape):
        raise VitbenchError(f"{name} has shape {tuple(out.shape)}, expected {of}{tuple(shape)}")
    if dtype is not None and out.dtype != dtype:
        raise VitbenchError(f"{name} has dtype {out.dtype}, expected {of}{dtype}")
    if contiguous and not out.is_contiguous():
        raise VitbenchError(f"{name} must be contiguous (strides {out.stride()})")
    if out.device != device:
        raise VitbenchError(f"{name} is on {out.device} but the inputs are on {device}")
    if any(st == 0 and n > 1 for n, st in zip(out.shape, out.stride())):
        raise VitbenchError(f"{name} has a zero stride (strides {out.stride()}): its elements overlap")
    for other, t in (disjoint_from or {}).items():
        if t is not None and overlaps(out, t):
            raise VitbenchError(f"{name} overlaps {other}; the kernel would read what it overwrites")
    return out


def gemm_operands_ok(a, w, bias, residual, out, *, adds_residual: bool) -> bool:
    """The shape checks shared by the alternative GEMM kernels' eligibility (matmul_gluon,
    matmul_fma): a 2-D or 3-D `a` and a 2-D `w` with the same, nonzero K and a nonzero N; a
    residual exactly when the epilogue adds one; a unit-stride bias of N; residual and out of the
    output's shape; an out at the residual's address only as the same view (each element is then
    read before it is written over)."""
    if w.dim() != 2 or a.dim() not in (2, 3) or w.shape[1] != a.shape[-1] or 0 in (a.shape[-1], w.shape[0]):
        return False
    if (residual is not None) != adds_residual:
        return False
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != w.shape[0] or bias.stride(0) != 1):
        return False
    shape = (*a.shape[:-1], w.shape[0])
    if any(t is not None and tuple(t.shape) != shape for t in (residual, out)):
        return False
    return not (out is not None and residual is not None and out.data_ptr() == residual.data_ptr()
                and out.stride() != residual.stride())


def check_int32_offsets(name: str, t: torch.Tensor, from_dim: int = 0) -> None:
    """Kernels index dims from `from_dim` on in int32: refuse layouts whose offsets would overflow."""
    span = sum((n - 1) * abs(st) for n, st in zip(t.shape[from_dim:], t.stride()[from_dim:]) if n > 0)
    if span >= 2**31:
        raise VitbenchError(
            f"{name} (shape {tuple(t.shape)}, strides {t.stride()}) spans {span} elements within "
            f"one batch entry; the kernel indexes it with 32-bit offsets (< 2^31): make it contiguous"
        )


def rows_out(x: torch.Tensor, out: torch.Tensor, n_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(o2, dst) for a row kernel that reads x and writes the non-empty `out` [..., n_cols].

    o2 is `out` viewed as [rows, n_cols] with one row stride (no copy; VitbenchError if it cannot
    be). dst is where the kernel writes: o2 itself, or a temporary when `out` shares x's storage,
    since autotuning re-runs the kernel on its arguments; copy dst into o2 when they differ.
    """
    try:
        o2 = out.view(-1, n_cols)
    except RuntimeError:
        raise VitbenchError(
            f"out (shape {tuple(out.shape)}, strides {out.stride()}) cannot be viewed as rows "
            "with one row stride"
        ) from None
    aliased = out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    return o2, torch.empty(o2.shape, dtype=o2.dtype, device=o2.device) if aliased else o2


def check_same_dtype(**tensors: torch.Tensor | None) -> torch.dtype:
    present = {k: v for k, v in tensors.items() if v is not None}
    dtypes = {v.dtype for v in present.values()}
    if len(dtypes) > 1:
        desc = ", ".join(f"{k}={v.dtype}" for k, v in present.items())
        raise VitbenchError(f"dtype mismatch: {desc}")
    return dtypes.pop()


def check_precision(precision: str, dtype: torch.dtype) -> str:
    """The tl.dot input_precision for `precision` (PRECISIONS) on `dtype` operands: fp32 dots are
    exact ("ieee") unless the caller asks for another mode; 16-bit ones get "ieee" (ignored).
    The interpreter computes every fp32 dot in fp32 with numpy and knows no "bf16x*" mode: it gets
    "ieee" there (what it computes anyway)."""
    if precision not in PRECISIONS:
        raise VitbenchError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if dtype != torch.float32 or (INTERPRETER and precision.startswith("bf16x")):
        return "ieee"
    return precision


def round_tf32_(t: torch.Tensor) -> torch.Tensor:
    """fp32 `t` rounded in place to the nearest TF32 value (10-bit mantissa, ties away from
    zero: _tiles.round_tf32's arithmetic, PTX cvt.rna.tf32.f32, bit for bit; NaNs quieted, so
    they stay NaN once a tensor core drops their low bits). Other dtypes are returned unchanged
    (fp16 and bf16 values are TF32 values already). For weights that a
    `matmul(..., tf32_exact=True)` call reads."""
    if t.dtype != torch.float32:
        return t
    bits = t.view(torch.int32)
    rounded = (bits + 0x1000) & -0x2000  # int32 wraps like the kernel's uint32 (sign bit kept)
    bits.copy_(torch.where(torch.isnan(t), bits | 0x400000, rounded))
    return t


# Autotuning times each config for ~TUNE_REP_MS after TUNE_WARMUP_MS (Triton's defaults are
# 25 / 100 ms): a sweep autotunes every new shape, and at 10-15 configs per shape the defaults
# made tuning, not measuring, the bulk of a suite's time. 40 ms still averages ~40 runs of a
# 1 ms kernel and thousands of a small one.
TUNE_WARMUP_MS, TUNE_REP_MS = 10, 40


# A config faster than this (eager do_bench, L2 flushed before each launch) is timed again replayed
# from a CUDA graph (back to back, warm L2), and that figure is the one the autotuner compares.
# Measured on an H100 (2026-11-27, ViT-B/16 bf16 batch 1, every GEMM on the pointer kernel): with
# eager figures only, two processes picked different tiles for 8 of 12 GEMM shapes and forwards
# took 0.549-0.641 ms across four processes; with graph figures below this threshold two
# processes took 0.563 and 0.567 ms. Mixing the two timings within one shape cannot change which
# group wins: the fastest eager config is below the threshold whenever any is, and a config's
# graph figure (no flush, no gaps) is normally not above its eager one, so the pick is the graph-timed
# fastest of the configs under the threshold, or the eager fastest when none is.
TUNE_GRAPH_BELOW_MS = 0.05
TUNE_GRAPH_ENV = "VITBENCH_TUNE_GRAPH_BELOW_MS"  # overrides it, in ms; 0 = eager figures only


def tune_graph_below_ms() -> float:
    """TUNE_GRAPH_BELOW_MS, or VITBENCH_TUNE_GRAPH_BELOW_MS when set (for A/B runs of the rule)."""
    raw = os.environ.get(TUNE_GRAPH_ENV, "").strip()
    if not raw:
        return TUNE_GRAPH_BELOW_MS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise VitbenchError(f"{TUNE_GRAPH_ENV}={raw!r}: give milliseconds >= 0 (0: time every "
                            "autotuning config eagerly), or leave it unset")
    return value


# On unless VITBENCH_TUNE_COLD=0 (docs/performance.md, step 7): those graph replays are timed with
# L2 flushed before each launch. Why: inside a forward a batch-1 GEMM reads its weights
# from DRAM (the 173 MB of ViT-B/16 weights do not stay in the 50 MB L2), while a replay of the same
# kernel back to back finds them in L2; configs fast on L2-resident weights need not be fast on
# weights streamed from DRAM (e.g. split-K, which adds parallelism to the stream).
TUNE_COLD_ENV = "VITBENCH_TUNE_COLD"
_FLUSH_BYTES = 96 << 20  # written before each timed launch: more than the H100's 50 MB L2
_FLUSH: dict[str, torch.Tensor] = {}
_FLUSH_MS: dict[str, float] = {}


def tune_cold() -> bool:
    """VITBENCH_TUNE_COLD as a bool: "0" -> False; unset, "" or "1" -> True; else VitbenchError."""
    return env_flag(TUNE_COLD_ENV, "autotune small kernels with L2 flushed before each "
                                   "graph-replayed launch", default=True)


def graph_ms(fn: Callable, rep: int, quantiles=None, cold: bool = False):
    """triton's do_bench_cudagraph figure(s) for `fn` (ms; the median unless `quantiles`); with
    `cold`, each replayed launch follows a write of _FLUSH_BYTES (L2 then holds none of fn's data),
    and the write's own replayed time (measured once per device) is subtracted."""
    torch.cuda.synchronize()  # do_bench_cudagraph runs on a stream of its own
    if not cold:
        return triton.testing.do_bench_cudagraph(fn, rep=rep, quantiles=quantiles, return_mode="median")
    device = str(torch.device("cuda", torch.cuda.current_device()))
    if device not in _FLUSH:
        # an ordinary tensor even when the first autotuning runs under torch.inference_mode: an
        # inference tensor's zero_() would fail in every later autotuning outside that mode
        with torch.inference_mode(False):
            _FLUSH[device] = torch.empty(_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    flush = _FLUSH[device]

    def flushed():
        flush.zero_()
        fn()

    both = triton.testing.do_bench_cudagraph(flushed, rep=rep, quantiles=quantiles, return_mode="median")
    if device not in _FLUSH_MS:  # the flush's own time, once per device (the same for every config)
        _FLUSH_MS[device] = triton.testing.do_bench_cudagraph(flush.zero_, rep=4 * rep, return_mode="median")
    alone = _FLUSH_MS[device]
    if isinstance(both, (list, tuple)):
        return [max(t - alone, 0.0) for t in both]
    return max(both - alone, 0.0)


def _tune_bench(kernel_call: Callable, quantiles) -> list[float]:
    eager = triton.testing.do_bench(kernel_call, warmup=TUNE_WARMUP_MS, rep=TUNE_REP_MS,
                                    quantiles=quantiles)
    median = eager[0] if isinstance(eager, (list, tuple)) else eager
    if median >= tune_graph_below_ms():
        return eager
    return graph_ms(kernel_call, TUNE_REP_MS // 4, quantiles, cold=tune_cold())


def autotune(configs: list[triton.Config], key: list[str], **kwargs) -> Callable:
    """`triton.autotune` on a GPU; under the interpreter, the first config, fixed.

    `@triton.autotune` cannot run in the interpreter without a GPU driver, so there the
    returned kernel binds the first config's meta-parameters and launches directly.
    """

    def decorate(fn):
        _check_config_names(fn, configs)
        if not INTERPRETER:
            kwargs.setdefault("do_bench", _tune_bench)
            tuner = triton.autotune(configs=configs, key=key, **kwargs)(fn)
            TUNERS.append(tuner)
            return tuner
        return _FixedConfig(fn, configs[0])

    return decorate


# Every autotuner made by autotune(), in creation order: autotune_picks() reads what each picked.
TUNERS: list = []


def _kernel_name(fn) -> str:
    while not inspect.isfunction(fn):
        fn = fn.fn
    return fn.__name__


def autotune_picks(tuners: list | None = None) -> list[str]:
    """The config each autotuner picked per key so far in this process, one line each:
    '_matmul_tma_kernel (25216, 3072, 768, 'gelu', True) bfloat16 -> BLOCK_M=128 ... w8 s3'.
    Two processes of one commit can pick differently among near-equal configs: run metadata keeps
    these lines so that such a difference can be seen."""
    out = []
    for tuner in TUNERS if tuners is None else tuners:
        name, n_keys = _kernel_name(tuner), len(tuner.keys)
        for key, cfg in dict(getattr(tuner, "cache", {})).items():
            values, dtypes = tuple(key[:n_keys]), sorted({str(k) for k in key[n_keys:]})
            params = " ".join(f"{k}={v}" for k, v in cfg.kwargs.items())
            out.append(f"{name} {values} {','.join(dtypes)} -> {params} w{cfg.num_warps} s{cfg.num_stages}")
    return out


def _check_config_names(fn, configs: list[triton.Config]) -> None:
    """TypeError at import when a config sets a name that is not a parameter of the kernel (else
    the GPU would find out at its first launch, and the interpreter never)."""
    py = fn
    while not inspect.isfunction(py):  # through autotune, heuristics and jit wrappers
        py = py.fn
    params = set(inspect.signature(py).parameters)
    for c in configs:
        unknown = sorted(set(c.kwargs) - params)
        if unknown:
            raise TypeError(f"{py.__name__}: config {c.kwargs} sets {unknown}, not parameters of the kernel")


class _FixedConfig:
    """Launch `fn` with one config's meta-parameters (interpreter stand-in for autotune)."""

    def __init__(self, fn, config: triton.Config):
        self.fn, self.config = fn, config

    def __getitem__(self, grid):
        meta = dict(self.config.kwargs)
        if not INTERPRETER:  # a forced config on a GPU (tests): its warps and stages too
            meta.update(num_warps=self.config.num_warps, num_stages=self.config.num_stages)

        def launch(*args, **kwargs):
            g = grid({**kwargs, **self.config.kwargs}) if callable(grid) else grid
            return self.fn[g](*args, **kwargs, **meta)

        return launch


# --- row kernels (layernorm, softmax): several short rows per program, whole rows in registers.

# Elements one program aims to hold: several short rows (e.g. 197 tokens) are packed per program.
_TARGET_ELEMS = 4096


def _prune_row_warps(configs, named_args, **kwargs):
    # Keep num_warps that give each thread between 1 and 64 elements of the [BLOCK_M, BLOCK_N] tile.
    elems = kwargs["BLOCK_M"] * kwargs["BLOCK_N"]
    kept = [c for c in configs if 32 <= elems // c.num_warps <= 2048]
    return kept or configs[:1]


def row_autotune(fn):
    """Autotune num_warps of a row kernel; it must take n_cols, BLOCK_M, BLOCK_N and SINGLE.

    Candidates 4, 8, 16, 2, 1 warps (4 under the interpreter), pruned to 1..64 elements a thread.
    """
    return autotune(
        configs=[triton.Config({}, num_warps=w) for w in (4, 8, 16, 2, 1)],
        key=["n_cols", "BLOCK_M", "BLOCK_N", "SINGLE"],
        prune_configs_by={"early_config_prune": _prune_row_warps},
    )(fn)


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def row_tiles(n_rows: int, n_cols: int, device: torch.device, max_block: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N): whole row if it fits, short rows packed while the grid fills the GPU.

    `max_block` (a power of 2) is the widest row held whole in registers; wider rows get
    BLOCK_N = max_block and the kernel loops over chunks.
    """
    block_n = min(max(triton.next_power_of_2(n_cols), 16), max_block)
    block_m = max(1, min(_TARGET_ELEMS // block_n, triton.next_power_of_2(n_rows)))
    if not INTERPRETER:  # keep >= 4 programs per SM so small batches still use every SM
        programs = 4 * _sm_count(device.index if device.index is not None else 0)
        while block_m > 1 and triton.cdiv(n_rows, block_m) < programs:
            block_m //= 2
    return block_m, block_n


_TUNED_APART: set = set()


def scratch_like(t: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous tensor with t's sizes, dtype and device: compact even when t is
    a strided view (the CLS rows of [B, T, D] would otherwise take a B*T*D span)."""
    return torch.empty(t.size(), dtype=t.dtype, device=t.device)


def tune_apart(key: tuple, kernel, tune: Callable[[], None]) -> None:
    """Before an in-place launch (out aliases the residual it reads): run `tune` once per `key`, a
    launch of the same autotuner out of place on a scratch output, so that the in-place launch
    finds its config cached and is never timed. Why not triton's restore_value: it clones `out`
    before and copies it back after every timed run, inside the timing, and at batch 1-8 those two
    copies cost about what the GEMM does: the residual GEMMs' picks then differed from process to
    process (H100, 2026-11-27, docs/performance.md step 7). No-op for a fixed config (interpreter,
    forced) and inside a graph capture (nothing can be timed there)."""
    key = (id(kernel), *key)  # a tuner put in place later (tests, tools) starts untuned
    if key in _TUNED_APART or isinstance(kernel, _FixedConfig):
        return
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return
    tune()
    _TUNED_APART.add(key)
