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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitbench._backend import DEVICE
from vitbench.bench.case import Case, Provider, Repeats, torch_dtype
from vitbench.bench.runner import RunResult
from vitbench.bench.timers import TIMERS
from vitbench.errors import VitbenchError
from vitbench.suites.common import (  # device_slug: imported from here by callers
    ON_GPU, SuitePlan, device_slug, find_config, run_plan,  # noqa: F401
)
from vitbench.suites.config import PROVIDERS, CaseSet, KernelConfig, load_kernel_config
from vitbench.suites.config_base import DTYPES, PRECISIONS
from vitbench.suites.kernel_ops import IMPLS
from vitbench.suites.kernel_specs import OP_SPECS
from vitbench.suites.options import check_choice, parse_choices

SUITE = "kernels"
HOLD = True  # kernels are timed on the device alone: hold the GPU while the host enqueues
INTERPRETER_DTYPE_NOTE = ("interpreter: fp32 only unless --dtype is given "
                          "(Triton's interpreter computes bf16 tl.dot wrongly, triton#11584)")


@dataclass
class KernelCase(Case):
    options: dict[str, Any] = field(default_factory=dict)


def configs_dir() -> Path:
    """`configs/` beside the package (a source checkout), else `./configs`."""
    found = find_config("kernels")
    if found is not None and found.is_dir():
        return found.parent
    raise VitbenchError("cannot find the configs/kernels folder (looked beside the vitbench "
                        "package and in the current folder); pass --config FILE")


def sweep_names() -> list[str]:
    """Names accepted by --op: one per configs/kernels/<name>.yaml; "all" runs them in this
    order: the model-shape sets first (vit: the shapes that matter most), then the op sweeps."""
    names = sorted(p.stem for p in (configs_dir() / "kernels").glob("*.yaml"))
    return [n for n in names if n not in OP_SPECS] + [n for n in OP_SPECS if n in names]


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
                ops: set[str] | None, source: str, repeats: Repeats | None,
                precisions: list[str] | None = None) -> list[KernelCase]:
    """Expand the config's case sets (or its quick sets) into cases; reject duplicate rows.
    `precisions` (fp32 rows of ops with matrix products) replaces the file's when given."""
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
                for prec in (precisions or cs.precisions or cfg.precisions) if dots else [""]:
                    c = _case(cs, shape, dtype, prec, repeats)
                    key = (c.op, c.case, c.dtype, c.precision, c.shape_str)
                    if key in seen:
                        raise VitbenchError(f"{source}: case sets repeat a row {key}; give the "
                                            "sets different labels")
                    seen[key] = True
                    cases.append(c)
    return cases


def plan_kernels(op: str | None = None, *, config: str | Path | None = None,
                 dtype: str | None = None, providers: str | None = None,
                 timer: str | None = None, quick: bool = False,
                 precision: str | None = None) -> SuitePlan:
    """Resolve what to run: config file(s), op filter, dtype/provider/timer/precision overrides."""
    notes: list[str] = []
    dtypes = parse_choices(dtype, "dtype", DTYPES) if dtype is not None else None
    precs = parse_choices(precision, "precision", PRECISIONS) if precision is not None else None
    prov_names = parse_choices(providers, "providers", PROVIDERS) if providers is not None else None
    if timer is not None:
        check_choice(timer, "timer", TIMERS, "timer")
    if config is not None:
        files = [Path(config)]
        ops = None
        if op and op != "all":
            ops = set(parse_choices(op, "op", OP_SPECS))
    else:
        if not op:
            choices = ", ".join(sweep_names())
            raise VitbenchError(f"give --op ({choices}, all) or --config FILE")
        names = sweep_names() if op == "all" else parse_choices(op, "op", sweep_names())
        files, ops = [configs_dir() / "kernels" / f"{n}.yaml" for n in names], None
    if not ON_GPU and dtypes is None:
        dtypes = ["fp32"]
        notes.append(INTERPRETER_DTYPE_NOTE)
    if not ON_GPU and not quick:
        notes.append("interpreter: full-size sweeps take hours here; --quick runs the small shapes")

    cases: list[KernelCase] = []
    resolved_files, timers, prov_lists = {}, [], []
    for f in files:
        cfg = load_kernel_config(f)
        reps = cfg.repeats.to_repeats() if ON_GPU else None
        cases += build_cases(cfg, quick=quick, dtypes=dtypes, ops=ops, source=str(f), repeats=reps,
                             precisions=precs)
        resolved_files[_display(f)] = cfg.model_dump(by_alias=True, exclude_none=True)
        timers.append(cfg.timer)
        prov_lists.append(cfg.providers)
    if not cases:
        raise VitbenchError(f"no cases for op {op!r} in {', '.join(map(str, files))}")
    if precs is not None and not any(c.precision for c in cases):
        notes.append(f"--precision {','.join(precs)} applies to fp32 rows of ops with matrix "
                     "products only; none here")
    _check_unique(cases)

    if prov_names is None:
        prov_names = list(dict.fromkeys(p for lst in prov_lists for p in lst))
        if not ON_GPU and "torch-compile" in prov_names:
            prov_names.remove("torch-compile")
            notes.append("interpreter: torch-compile left out (ask for it with --providers)")
    if timer is None:
        timer = "host" if not ON_GPU else timers[0]
        if ON_GPU and len(set(timers)) > 1:
            notes.append(f"configs ask for timers {sorted(set(timers))}; using {timer!r}")
    hold = HOLD and timer != "host"  # the host timer has nothing to hold
    resolved = {
        "suite": SUITE, "op": op, "quick": quick, "dtypes": dtypes, "precisions": precs,
        "providers": prov_names,
        "timer": timer, "files": resolved_files,
        # device timers hold the GPU while the host enqueues (launch latency out of the samples)
        "hold": hold,
        "baseline": next(n for n, p in PROVIDER_TABLE.items() if p.is_baseline),
        # --resume refuses when the timer, its hold or a config file both runs read differ
        "resume_keys": ["timer", "hold", "files.*"],
    }
    return SuitePlan(SUITE, cases, providers_by_name(prov_names), timer, resolved, notes,
                     hold=hold)


def _display(path: Path) -> str:
    """A shipped config as "configs/kernels/x.yaml" (same hash on every checkout), else as given."""
    try:
        return str(path.resolve().relative_to(configs_dir().parent))
    except ValueError:
        return str(path)


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


def run_kernels(plan: SuitePlan, *, out_dir: str | Path | None = None, resume: bool = False,
                progress: bool = True, console=None) -> RunResult:
    """Run a plan through the shared engine; rows go to <out_dir>/kernels-<run_id>.csv."""
    return run_plan(plan, out_dir=out_dir, resume=resume, progress=progress, console=console)
