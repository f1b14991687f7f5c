"""Per-kernel profile of ONE forward of the Triton ViT: where the time goes, kernel by kernel.

    result = profile_model(model="vit-base-patch16-224", batch=8, dtype="bf16")
    result.rows            # one KernelRow per kernel name, largest total time first
    write_csv(result, path); result.trace -> Chrome trace written by torch.profiler

How it measures:
  1. build the model from a named config (random weights by default), pixels in [-1, 1];
  2. warm up outside the profiled region (Triton JIT + autotuning happen there);
  3. one *counting* forward with the kernel launchers wrapped: every launch is recorded with
     its kernel's name and its (FLOPs, bytes) from the kernel file's own cost function;
  4. one forward under torch.profiler. On a GPU the rows are CUDA activity (device kernel
     time, Triton kernels by name, plus torch's copies/memsets); under the Triton interpreter
     they are CPU activity: each launch runs inside a `record_function(<kernel name>)` range,
     and the rows are the forward's top-level CPU ranges/ops (NOT representative of a GPU).
  5. rows = kernels grouped by name: calls, total, %, mean per call, and achieved TFLOP/s and
     GB/s where the name is a vitbench kernel (costs summed over the forward's launches).
CUDA graphs are off by default: kernels replayed inside a graph may be invisible to the
profiler (CUPTI version dependent). `graphs=True` profiles one replay anyway (GPU only).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from vitbench._backend import DEVICE, HAS_CUDA, INTERPRETER
from vitbench.bench.case import torch_dtype
from vitbench.errors import VitbenchError
from vitbench.kernels._common import PRECISIONS
from vitbench.kernels.add import add_cost
from vitbench.kernels.attention import attention_cost
from vitbench.kernels.bmm import bmm_cost
from vitbench.kernels.layernorm import layernorm_cost
from vitbench.kernels.matmul import matmul_cost
from vitbench.kernels.patch_embed import patch_embed_cost
from vitbench.kernels.softmax import softmax_cost

ON_GPU = HAS_CUDA and not INTERPRETER
FORWARD_RANGE = "vitbench::forward"  # CPU range around the profiled forward (interpreter rows)


# --- launcher -> (Triton kernel name, cost of one call) -------------------------------------
def _size(t: torch.Tensor) -> int:
    return t.element_size()


def _cost_matmul(a, w, bias=None, *, residual=None, **_) -> tuple[int, int]:
    K, N = a.shape[-1], w.shape[0]
    # M, N, K: rows of a, w's rows, shared dim; bias read N, residual read M*N
    return matmul_cost(a.numel() // K, N, K, _size(a), bias is not None, residual is not None)


def _cost_matmul_splitk(a, w, bias=None, *, config, residual=None, **_) -> tuple[int, int]:
    # the GEMM's cost plus its fp32 workspace, written by pass 1 and read by pass 2
    flops, nbytes = _cost_matmul(a, w, bias, residual=residual)
    return flops, nbytes + 8 * config.split * (a.numel() // a.shape[-1]) * w.shape[0]


def _cost_matmul_fma_splitk(a, w, bias=None, *, config, residual=None, **_) -> tuple[int, int]:
    # likewise: the GEMM's cost plus the workspace of its shares (kernels/matmul_fma_splitk.py)
    flops, nbytes = _cost_matmul(a, w, bias, residual=residual)
    shares = config.plan(a.shape[-1])[1]
    return flops, nbytes + 8 * shares * (a.numel() // a.shape[-1]) * w.shape[0]


def _cost_attention(q, k, v, **_) -> tuple[int, int]:
    B, H, T, d = q.shape  # self-attention: T_q = T_k in the ViT
    return attention_cost(B, H, T, d, _size(q))


def _cost_layernorm(x, weight, bias, *args, **_) -> tuple[int, int]:
    D = x.shape[-1]
    return layernorm_cost(x.numel() // D, D, _size(x))


def _cost_add_layernorm(x, residual, weight, bias, *args, **_) -> tuple[int, int]:
    D = x.shape[-1]
    return layernorm_cost(x.numel() // D, D, _size(x), fused_residual=True)


def _cost_patch_embed(pixels, weight, bias, *, pos_embed=None, cls_token=None, **_) -> tuple[int, int]:
    B, C, H, W = pixels.shape
    return patch_embed_cost(B, C, H, W, weight.shape[0], weight.shape[-1], _size(pixels),
                            pos_embed is not None, cls_token is not None)


def _cost_add(x, y, **_) -> tuple[int, int]:
    return add_cost(x.numel(), y.numel(), _size(x))


def _cost_softmax(x, **_) -> tuple[int, int]:
    cols = x.shape[-1]
    return softmax_cost(x.numel() // cols, cols, _size(x))


def _cost_bmm(a, b, *, transpose_b: bool = False, **_) -> tuple[int, int]:
    M, K = a.shape[-2:]
    N = b.shape[-2] if transpose_b else b.shape[-1]
    return bmm_cost(a.numel() // (M * K), M, N, K, _size(a))


# launcher name in vitbench.kernels -> (the @triton.jit / @gluon.jit kernel it launches, cost of
# one call). The kernel names are those of vitbench/kernels/<op>.py (tests check they exist there).
LAUNCHERS: dict[str, tuple[str, Callable[..., tuple[int, int]]]] = {
    "matmul": ("_matmul_kernel", _cost_matmul),
    "attention": ("_attention_kernel", _cost_attention),
    "layernorm": ("_layernorm_kernel", _cost_layernorm),
    "add_layernorm": ("_layernorm_kernel", _cost_add_layernorm),
    "patch_embed": ("_patch_embed_kernel", _cost_patch_embed),
    "add": ("_add_kernel", _cost_add),
    "softmax": ("_softmax_kernel", _cost_softmax),
    "bmm": ("_bmm_kernel", _cost_bmm),
    "matmul_tma": ("_matmul_tma_kernel", _cost_matmul),
    "_matmul_pointer": ("_matmul_kernel", _cost_matmul),
    "matmul_splitk": ("_splitk_partial_kernel", _cost_matmul_splitk),  # both passes' cost, on pass 1
    "matmul_gluon": ("_gemm_ws_kernel", _cost_matmul),
    "matmul_fma": ("_fma_gemm_kernel", _cost_matmul),
    # pass 1 (Gluon) with both passes' cost; pass 2 is matmul_splitk's _splitk_sum_kernel
    "matmul_fma_splitk": ("_fma_splitk_kernel", _cost_matmul_fma_splitk),
    "attention_fma": ("_fma_attn_kernel", _cost_attention),
}
KERNEL_NAMES = sorted({k for k, _ in LAUNCHERS.values()})
# Launchers another launcher calls instead of launching its own kernel, -> their module: matmul()
# sends each GEMM to matmul_tma(), matmul_gluon(), matmul_fma(), matmul_fma_splitk() or
# _matmul_pointer(), once, or twice when it splits the rows (kernels/_rowsplit.py), the second
# time maybe to matmul_splitk(); attention() sends exact fp32 calls to attention_fma() where that
# timed faster. Wrapped in their own module too, so each launch counts as the kernel that really
# ran, with its own rows' cost (the outer launcher records nothing when a nested one did).
NESTED = {"matmul_tma": "vitbench.kernels.matmul_tma", "_matmul_pointer": "vitbench.kernels.matmul",
          "matmul_splitk": "vitbench.kernels.matmul_splitk", "matmul_gluon": "vitbench.kernels.matmul_gluon",
          "matmul_fma": "vitbench.kernels.matmul_fma", "matmul_fma_splitk": "vitbench.kernels.matmul_fma_splitk",
          "attention_fma": "vitbench.kernels.attention_fma"}


@dataclass
class Launch:
    kernel: str
    flops: int
    bytes: int


@contextlib.contextmanager
def instrumented(namespace: Any, launches: list[Launch] | None) -> Iterator[None]:
    """Wrap the launchers `namespace` uses (e.g. vitbench.model.modules) for the block's length:
    each call runs inside `record_function(<kernel name>)` and, if `launches` is a list, appends
    its Launch (a call that a nested launcher, see NESTED, recorded is counted once, as the kernel
    that ran). Only names bound to launchers of vitbench.kernels are wrapped; restored after."""
    saved: list[tuple[Any, str, Callable]] = []

    def wrap(fn: Callable, kernel: str, cost: Callable) -> Callable:
        def launcher(*args, **kwargs):
            if launches is None:
                with torch.profiler.record_function(kernel):
                    return fn(*args, **kwargs)
            flops, nbytes = cost(*args, **kwargs)
            mark = len(launches)
            with torch.profiler.record_function(kernel):
                out = fn(*args, **kwargs)
            if len(launches) == mark:  # no nested launcher recorded this call
                launches.insert(mark, Launch(kernel, flops, nbytes))
            return out
        return launcher

    def patch(where: Any, name: str) -> None:
        fn = getattr(where, name, None)
        if fn is not None and getattr(fn, "__module__", "").startswith("vitbench.kernels"):
            saved.append((where, name, fn))
            setattr(where, name, wrap(fn, *LAUNCHERS[name]))

    try:
        for name in LAUNCHERS:
            patch(namespace, name)
        for name, module in NESTED.items():
            patch(importlib.import_module(module), name)
        yield
    finally:
        for where, name, fn in reversed(saved):
            setattr(where, name, fn)


# --- result ----------------------------------------------------------------------------------
@dataclass
class KernelRow:
    kernel: str
    calls: int
    total_us: float
    pct: float = 0.0
    flops: int | None = None  # summed over the forward's launches of this kernel (None: unknown op)
    bytes: int | None = None

    @property
    def mean_us(self) -> float:
        return self.total_us / self.calls if self.calls else math.nan

    @property
    def tflops(self) -> float | None:
        return self.flops / self.total_us * 1e-6 if self.flops and self.total_us > 0 else None

    @property
    def gbps(self) -> float | None:
        return self.bytes / self.total_us * 1e-3 if self.bytes and self.total_us > 0 else None


@dataclass
class ProfileResult:
    model: str
    batch: int
    dtype: str
    device: str
    activity: str  # "cuda" (device kernel time) or "cpu" (interpreter: not representative)
    graphs: bool
    rows: list[KernelRow]
    launches: list[Launch]
    trace: Path  # Chrome trace written by torch.profiler
    csv: Path | None = None  # the table, written by profile_model
    notes: list[str] = field(default_factory=list)

    @property
    def representative(self) -> bool:
        return self.activity == "cuda"

    @property
    def total(self) -> KernelRow:
        known = [r for r in self.rows if r.flops is not None]
        return KernelRow("total", sum(r.calls for r in self.rows), sum(r.total_us for r in self.rows),
                         100.0 if self.rows else 0.0, sum(r.flops for r in known) if known else None,
                         sum(r.bytes for r in known) if known else None)

    def launch_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for launch in self.launches:
            counts[launch.kernel] += 1
        return dict(counts)


# --- measurement -----------------------------------------------------------------------------
def _check_inputs(model: str, batch: int, dtype: str, precision: str, graphs: bool) -> torch.dtype:
    from vitbench.model.configs import hf_config

    hf_config(model)  # unknown name -> VitbenchError listing the known ones
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise VitbenchError(f"--batch must be an integer >= 1, got {batch!r}")
    try:
        dt = torch_dtype(dtype)
    except VitbenchError as exc:
        raise VitbenchError(f"--dtype: {exc}") from None
    if precision not in PRECISIONS:
        raise VitbenchError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "ieee" and dt != torch.float32:
        raise VitbenchError(f"--precision {precision} applies to fp32 only, not --dtype {dtype}")
    if graphs and not ON_GPU:
        raise VitbenchError("--graphs needs a CUDA GPU (here Triton runs in the interpreter)")
    return dt


def _device_name() -> str:
    return torch.cuda.get_device_name() if ON_GPU else "CPU (Triton interpreter)"


def _group(events: list[tuple[str, float]], launches: list[Launch]) -> list[KernelRow]:
    """(name, duration us) events -> rows by name, costs attached where the name is ours."""
    rows: dict[str, KernelRow] = {}
    for name, us in events:
        row = rows.setdefault(name, KernelRow(name, 0, 0.0))
        row.calls += 1
        row.total_us += us
    cost: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for launch in launches:
        cost[launch.kernel][0] += launch.flops
        cost[launch.kernel][1] += launch.bytes
    total = sum(r.total_us for r in rows.values())
    for row in rows.values():
        row.pct = 100.0 * row.total_us / total if total > 0 else 0.0
        if row.kernel in cost:
            row.flops, row.bytes = cost[row.kernel]
    return sorted(rows.values(), key=lambda r: (-r.total_us, r.kernel))


def _cuda_events(prof) -> list[tuple[str, float]]:
    from torch.autograd import DeviceType

    # Device activity: kernels, memcpy, memset. GPU-side projections of record_function ranges
    # (user annotations, e.g. the forward range) are device events too: not rows.
    return [(e.name, e.time_range.elapsed_us()) for e in prof.events()
            if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
            and e.name != FORWARD_RANGE]


def _cpu_events(prof) -> list[tuple[str, float]]:
    """Direct children of the forward range: kernel ranges and the torch ops between them."""
    events = list(prof.events())
    fwd = [e for e in events if e.name == FORWARD_RANGE]
    if not fwd:
        raise RuntimeError(f"profiler recorded no {FORWARD_RANGE!r} range")
    return [(c.name, c.time_range.elapsed_us()) for c in fwd[0].cpu_children]


def profile_model(*, model: str | None = None, batch: int = 1, dtype: str | None = None,
                  weights: str = "random", precision: str = "ieee", graphs: bool = False,
                  trace: str | Path | None = None, out_dir: str | Path | None = None,
                  warmup: int | None = None, cls_only: bool = True) -> ProfileResult:
    """Profile one forward; writes <out_dir>/profile-<model>-b<batch>-<dtype>[-<precision>].csv and the Chrome
    trace (default: beside it, .trace.json). out_dir defaults to results/<device>.

    cls_only (default, as `vitbench model` times it): with a classifier head, the forward that
    returns logits only, its last layer past attention on the CLS row; False: every output."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from vitbench.model import checkpoints, modules
    from vitbench.model.configs import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL
    from vitbench.model.graphs import GraphRunner

    model = model or (DEFAULT_GPU_MODEL if ON_GPU else DEFAULT_CPU_MODEL)
    dtype = dtype or ("bf16" if ON_GPU else "fp32")
    dt = _check_inputs(model, batch, dtype, precision, graphs)
    notes: list[str] = []
    if not ON_GPU:
        notes.append("no GPU: Triton interpreter, CPU activity; times are NOT representative "
                     "of a GPU (only calls and FLOP/byte counts are)")
        if dtype == "bf16":
            notes.append("interpreter: bf16 tl.dot is wrong (triton#11584); outputs are not "
                         "checked here, times only")
    notes.append("CUDA graphs on: kernels inside a graph replay may be missing from the profile"
                 if graphs else "CUDA graphs off (profiler default): kernels launched one by one")
    if cls_only:
        notes.append("logits only (as `vitbench model` runs it): the last layer past its attention "
                     "on the CLS row (--no-cls-only: the full forward)")
    from vitbench.kernels import _pdl

    if _pdl.PDL:
        notes.append("VITBENCH_PDL=1: each kernel may start before its predecessor ends and wait "
                     "inside; per-kernel times include that wait and overlap")
    out = _out_dir(out_dir)
    trace_path = Path(trace) if trace is not None else out / f"{base_name(model, batch, dtype, precision)}.trace.json"

    ckpt = checkpoints.load(weights, model)
    vit = modules.TritonViT(ckpt.spec, ckpt.local, precision=precision).to(device=DEVICE, dtype=dt).eval()
    gen = torch.Generator().manual_seed(0)
    s = ckpt.spec
    pixels = (torch.rand(batch, s.channels, s.image_h, s.image_w, generator=gen) * 2 - 1)
    pixels = pixels.to(device=DEVICE, dtype=dt)  # [B, C, H, W], like a normalised image

    def forward(px: torch.Tensor):
        with torch.inference_mode():
            return vit(px, logits_only=cls_only)

    sync = torch.cuda.synchronize if ON_GPU else (lambda: None)
    # JIT, autotuning and the GEMM kernel choice, outside the profiled region and before the
    # counting forward (the choice times candidates: their launches must not be counted)
    n_warmup = (3 if warmup is None else max(1, warmup)) if ON_GPU else (warmup or 0)
    for _ in range(n_warmup):
        forward(pixels)
    launches: list[Launch] = []
    with instrumented(modules, launches):  # counting forward (also a warm-up)
        forward(pixels)
    run = (lambda: forward(pixels))
    if graphs:
        runner = GraphRunner(forward)
        runner.capture(pixels, adopt=True)
        run = (lambda: runner(pixels))
    sync()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ON_GPU else [])
    ranges = contextlib.nullcontext() if ON_GPU else instrumented(modules, None)
    with ranges, torch_profile(activities=activities) as prof:
        with torch.profiler.record_function(FORWARD_RANGE):
            run()
        sync()
    events = _cuda_events(prof) if ON_GPU else _cpu_events(prof)
    rows = _group(events, launches)
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace_path))

    result = ProfileResult(model, batch, dtype, _device_name(), "cuda" if ON_GPU else "cpu",
                           graphs, rows, launches, trace_path, notes=notes)
    seen: dict[str, int] = defaultdict(int)  # calls per kernel in the profile
    for r in rows:
        seen[r.kernel] += r.calls
    for kernel, n in sorted(result.launch_counts().items()):
        if seen.get(kernel, 0) != n:
            notes.append(f"{kernel}: the forward launches it {n}x but the profile shows "
                         f"{seen.get(kernel, 0)} (graphs hide kernels? autotuning inside?)")
    result.csv = write_csv(result, out / f"{base_name(model, batch, dtype, precision)}.csv")
    return result


def base_name(model: str, batch: int, dtype: str, precision: str = "ieee") -> str:
    """profile-<model>-b<batch>-<dtype>, with -<precision> for fp32 in another mode than ieee
    (a tf32 or bf16x6 profile does not overwrite the exact one)."""
    suffix = f"-{precision}" if precision != "ieee" else ""
    return f"profile-{model}-b{batch}-{dtype}{suffix}"


def _out_dir(out_dir: str | Path | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    from vitbench.suites.kernels import device_slug

    return Path("results") / device_slug()


# --- CSV -------------------------------------------------------------------------------------
CSV_COLUMNS = ("model", "batch", "dtype", "device", "activity", "graphs", "kernel", "calls",
               "total_us", "pct", "mean_us", "flops", "bytes", "tflops", "gbps")


def write_csv(result: ProfileResult, path: str | Path) -> Path:
    """The table as CSV: one row per kernel, then the `total` row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    const = dict(model=result.model, batch=result.batch, dtype=result.dtype, device=result.device,
                 activity=result.activity, graphs=result.graphs)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in [*result.rows, result.total]:
            w.writerow({**const, "kernel": r.kernel, "calls": r.calls,
                        "total_us": f"{r.total_us:.3f}", "pct": f"{r.pct:.2f}",
                        "mean_us": f"{r.mean_us:.3f}",
                        "flops": "" if r.flops is None else r.flops,
                        "bytes": "" if r.bytes is None else r.bytes,
                        "tflops": "" if r.tflops is None else f"{r.tflops:.4g}",
                        "gbps": "" if r.gbps is None else f"{r.gbps:.4g}"})
    return path
