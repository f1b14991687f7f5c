"""The kernel suite: each Triton op vs PyTorch over the shapes of `configs/kernels/*.yaml`.

  plan = plan_kernels(op="matmul")            # or op="all", config="my.yaml", quick=True, ...
  result = run_kernels(plan, out_dir=None)    # -> vitbench.bench.runner.RunResult

Providers (allocation inside the call for all three):
  triton         our kernel (vitbench.kernels)                       -- built here
  torch          the eager op sequence a user writes (F.linear, F.gelu, + residual; F.layer_norm;
                 torch.softmax; torch.matmul; F.conv2d + flatten + transpose; SDPA; x + y)
  torch-compile  torch.compile (default mode, static shapes) of that same function; compile time
                 goes to compile_s. Off by default in the interpreter (it would compile C++ on CPU).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import vitbench
from vitbench._backend import DEVICE, HAS_CUDA, INTERPRETER
from vitbench.bench.case import Case, Provider, Repeats, torch_dtype
from vitbench.bench.runner import RunResult, run_suite
from vitbench.bench.timers import TIMERS
from vitbench.envinfo import device_info
from vitbench.errors import VitbenchError
from vitbench.suites.config import DTYPES, PROVIDERS, CaseSet, KernelConfig, load_kernel_config
from vitbench.suites.kernel_ops import IMPLS
from vitbench.suites.kernel_specs import OP_SPECS

SUITE = "kernels"
_ON_GPU = HAS_CUDA and not INTERPRETER
INTERPRETER_DTYPE_NOTE = ("interpreter: fp32 only unless --dtype is given "
                          "(Triton's interpreter computes bf16 tl.dot wrongly, triton#11584)")


@dataclass
class KernelCase(Case):
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class KernelPlan:
    cases: list[KernelCase]
    providers: list[Provider]
    timer: str
    config: dict[str, Any]  # resolved: what ran, for the metadata and its hash
    notes: list[str] = field(default_factory=list)


def configs_dir() -> Path:
    """`configs/` beside the package (a source checkout), else `./configs`."""
    beside_package = Path(vitbench.__file__).resolve().parent.parent / "configs"
    for base in (beside_package, Path.cwd() / "configs"):
        if (base / "kernels").is_dir():
            return base
    raise VitbenchError("cannot find the configs/kernels folder (looked beside the vitbench "
                        "package and in the current folder); pass --config FILE")


def sweep_names() -> list[str]:
    """Names accepted by --op: one per configs/kernels/<name>.yaml; "all" runs them in this
    order: the model-shape sets first (vit: the shapes that matter most), then the op sweeps."""
    names = sorted(p.stem for p in (configs_dir() / "kernels").glob("*.yaml"))
    return [n for n in names if n not in OP_SPECS] + [n for n in OP_SPECS if n in names]


def device_slug(name: str | None = None) -> str:
    """Folder name for a device: "NVIDIA H100 80GB HBM3" -> "h100"; no GPU -> "interpreter"."""
    if not _ON_GPU and name is None:
        return "interpreter"
    name = (name or device_info().name).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", name)
             if w and w not in ("nvidia", "geforce", "tesla") and not re.fullmatch(
                 r"\d+gb|hbm\d*e?|pcie|sxm\d*|nvl|gddr\d*x?", w)]
    return "-".join(words) or "gpu"


# --- providers -------------------------------------------------------------------------------
def _prepare_triton(case: KernelCase, args: tuple) -> Any:
    impl, s, o, p = IMPLS[case.op], case.shape, case.options, case.precision or "ieee"
    return lambda: impl.triton(s, o, p, args)


def _prepare_torch(case: KernelCase, args: tuple) -> Any:
    fn = IMPLS[case.op].torch_fn(case.shape, case.options)
    return lambda: fn(*args)


def _prepare_compile(case: KernelCase, args: tuple) -> Any:
    # A fresh dynamo state per case: no recompile limit reached (which silently falls back to
    # eager), no shape made dynamic by an earlier case. Compiled in the case's TF32 mode.
    torch._dynamo.reset()
    fn = torch.compile(IMPLS[case.op].torch_fn(case.shape, case.options), dynamic=False)
    return lambda: fn(*args)


PROVIDER_TABLE = {
    "triton": Provider("triton", _prepare_triton),
    "torch": Provider("torch", _prepare_torch, is_baseline=True),
    "torch-compile": Provider("torch-compile", _prepare_compile),
}


def providers_by_name(names: list[str]) -> list[Provider]:
    bad = [n for n in names if n not in PROVIDER_TABLE]
    if bad:
        raise VitbenchError(f"unknown provider {bad[0]!r}; choose from {', '.join(PROVIDERS)}")
    if not names:
        raise VitbenchError("no providers given")
    return [PROVIDER_TABLE[n] for n in dict.fromkeys(names)]


# --- cases -----------------------------------------------------------------------------------
def _case(cs: CaseSet, shape: dict[str, int], dtype: str, precision: str,
          repeats: Repeats | None) -> KernelCase:
    impl, opts = IMPLS[cs.op], dict(cs.options)
    dt = torch_dtype(dtype)
    flops, nbytes = impl.cost(shape, opts, torch.finfo(dt).bits // 8)
    return KernelCase(
        suite=SUITE, op=cs.op, case=cs.label, dtype=dtype, shape=shape,
        inputs=lambda: impl.inputs(shape, opts, dt, DEVICE),
        reference=lambda args: impl.reference(shape, opts, args),
        precision=precision, batch=shape.get("B") if cs.batch else None, size=impl.size(shape),
        flops=flops, bytes=nbytes, repeats=repeats, options=opts,
    )


def build_cases(cfg: KernelConfig, *, quick: bool, dtypes: list[str] | None,
                ops: set[str] | None, source: str, repeats: Repeats | None) -> list[KernelCase]:
    """Expand the config's case sets (or its quick sets) into cases; reject duplicate rows."""
    if not quick:
        sets = [(cs, cs.shapes()) for cs in cfg.cases]
    elif cfg.quick:
        sets = [(cs, cs.shapes()) for cs in cfg.quick]
    else:  # --quick on a file without a `quick:` list: the first two shapes of each set
        sets = [(cs, cs.shapes()[:2]) for cs in cfg.cases]
    cases, seen = [], {}
    for cs, shapes in sets:
        if ops is not None and cs.op not in ops:
            continue
        for shape in shapes:
            for dtype in dtypes or cs.dtypes or cfg.dtypes:
                dots = OP_SPECS[cs.op].dots and dtype == "fp32"
                for prec in (cs.precisions or cfg.precisions) if dots else [""]:
                    c = _case(cs, shape, dtype, prec, repeats)
                    key = (c.op, c.case, c.dtype, c.precision, c.shape_str)
                    if key in seen:
                        raise VitbenchError(f"{source}: case sets repeat a row {key}; give the "
                                            "sets different labels")
                    seen[key] = True
                    cases.append(c)
    return cases


def _split(value: str | None, what: str, allowed: tuple[str, ...]) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    for v in items:
        if v not in allowed:
            raise VitbenchError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    if not items:
        raise VitbenchError(f"--{what} is empty")
    return items


def plan_kernels(op: str | None = None, *, config: str | Path | None = None,
                 dtype: str | None = None, providers: str | None = None,
                 timer: str | None = None, quick: bool = False) -> KernelPlan:
    """Resolve what to run: config file(s), op filter, dtype/provider/timer overrides."""
    notes: list[str] = []
    dtypes = _split(dtype, "dtype", DTYPES)
    prov_names = _split(providers, "provider", PROVIDERS)
    if timer is not None and timer not in TIMERS:
        raise VitbenchError(f"unknown timer {timer!r}; choose from {', '.join(TIMERS)}")
    if config is not None:
        files = [Path(config)]
        ops = None
        if op and op != "all":
            ops = set(_split(op, "op", tuple(OP_SPECS)))
    else:
        if not op:
            choices = ", ".join(sweep_names())
            raise VitbenchError(f"give --op ({choices}, all) or --config FILE")
        names = sweep_names() if op == "all" else _split(op, "op", tuple(sweep_names()))
        files, ops = [configs_dir() / "kernels" / f"{n}.yaml" for n in names], None
    if not _ON_GPU and dtypes is None:
        dtypes = ["fp32"]
        notes.append(INTERPRETER_DTYPE_NOTE)
    if not _ON_GPU and not quick:
        notes.append("interpreter: full-size sweeps take hours here; --quick runs the small shapes")

    cases: list[KernelCase] = []
    resolved_files, timers, prov_lists = {}, [], []
    for f in files:
        cfg = load_kernel_config(f)
        reps = _repeats(cfg) if _ON_GPU else None
        cases += build_cases(cfg, quick=quick, dtypes=dtypes, ops=ops, source=str(f), repeats=reps)
        resolved_files[_display(f)] = cfg.model_dump(by_alias=True, exclude_none=True)
        timers.append(cfg.timer)
        prov_lists.append(cfg.providers)
    if not cases:
        raise VitbenchError(f"no cases for op {op!r} in {', '.join(map(str, files))}")
    _check_unique(cases)

    if prov_names is None:
        prov_names = list(dict.fromkeys(p for lst in prov_lists for p in lst))
        if not _ON_GPU and "torch-compile" in prov_names:
            prov_names.remove("torch-compile")
            notes.append("interpreter: torch-compile left out (ask for it with --providers)")
    if timer is None:
        timer = "host" if not _ON_GPU else timers[0]
        if _ON_GPU and len(set(timers)) > 1:
            notes.append(f"configs ask for timers {sorted(set(timers))}; using {timer!r}")
    resolved = {
        "suite": SUITE, "op": op, "quick": quick, "dtypes": dtypes, "providers": prov_names,
        "timer": timer, "files": resolved_files,
    }
    return KernelPlan(cases, providers_by_name(prov_names), timer, resolved, notes)


def _display(path: Path) -> str:
    """A shipped config as "configs/kernels/x.yaml" (same hash on every checkout), else as given."""
    try:
        return str(path.resolve().relative_to(configs_dir().parent))
    except ValueError:
        return str(path)


def _repeats(cfg: KernelConfig) -> Repeats:
    r = cfg.repeats
    return Repeats(budget_s=r.budget_s, min_reps=r.min_reps, max_reps=r.max_reps,
                   warmup_s=r.warmup_s)


def _check_unique(cases: list[KernelCase]) -> None:
    seen: dict[tuple, KernelCase] = {}
    for c in cases:
        key = (c.op, c.case, c.dtype, c.precision, c.shape_str)
        if key in seen and seen[key].options != c.options:
            raise VitbenchError(f"two config files define case {key} with different options")
        seen[key] = c
    if len(seen) != len(cases):  # same case from two files: keep the first
        uniq = {}
        for c in cases:
            uniq.setdefault((c.op, c.case, c.dtype, c.precision, c.shape_str), c)
        cases[:] = list(uniq.values())


def default_out_dir() -> Path:
    return Path("results") / device_slug()


def run_kernels(plan: KernelPlan, *, out_dir: str | Path | None = None, resume: bool = False,
                progress: bool = True, console=None) -> RunResult:
    """Run a plan through the shared engine; rows go to <out_dir>/kernels-<run_id>.csv."""
    from rich.console import Console

    console = console or Console(stderr=True)
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    return run_suite(SUITE, plan.cases, plan.providers, out_dir=out_dir or default_out_dir(),
                     timer=plan.timer, resume=resume, config=plan.config, progress=progress,
                     console=console)
