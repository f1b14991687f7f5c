"""The model suite: the Triton ViT vs HF (eager, SDPA) and torch.compile, per batch size.

  plan = plan_model(batch="1,8,32", model="vit-base-patch16-224", dtype="bf16")
  result = run_model(plan, out_dir=None)     # -> vitbench.bench.runner.RunResult

One case per (dtype, precision, batch): op = model name, case = "b<batch>", items = batch
(items_per_s = images/s). Every provider runs the same weights (one checkpoint, converted) on the
same pixels (uniform in [-1, 1], like a normalised image) and returns logits (last_hidden_state
for a headless checkpoint). Providers (all in eval mode, under torch.inference_mode, same dtype):
  triton         vitbench.model.TritonViT; on a GPU replayed from a CUDA graph (off: --no-graphs);
                 with a head, logits_only=True: the last layer computes only the CLS row after
                 its attention (off: --no-cls-only); FLOPs stay the full forward's for every row
  hf-eager       HF model, attn_implementation="eager"
  hf-sdpa        HF model, attn_implementation="sdpa" (the speedup baseline column)
  torch-compile  torch.compile(HF sdpa model, mode=compile_mode, dynamic=False), recompiled per
                 batch size; compile time goes to compile_s, never into latency
Gate: the reference is the HF model in float64 (eager attention). A row is ok when its
||out - ref|| / ||ref|| <= 1e-4 for fp32 unless its precision is tf32 (ieee, and the tensor-core
splits bf16x6 / tf32x3 / bf16x3, which keep fp32 accuracy), else <= max(1e-4, 1.5 x HF's own
error in the same dtype/precision), HF's own error being the larger of HF eager's and HF SDPA's
— the issue's criterion (#4): fp32 within 1e-4, otherwise no worse than 1.5x HF's own error.
Without a GPU, tf32 rows may also err up to the TF32 tolerance (1e-3): torch has no TF32 there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from vitbench._backend import DEVICE
from vitbench.bench.case import Case, Provider, Repeats, torch_dtype
from vitbench.bench.runner import RunResult
from vitbench.bench.timers import TIMERS
from vitbench.model import checkpoints
from vitbench.model.checkpoints import Checkpoint
from vitbench.model.configs import hf_config
from vitbench.model.graphs import GraphRunner
from vitbench.model.modules import TritonViT
from vitbench.numerics import rel_err, tolerance
from vitbench.suites.common import ON_GPU, SuitePlan, find_config, run_plan
from vitbench.suites.config_base import DTYPES, PRECISIONS
from vitbench.suites.model_config import COMPILE_MODES, PROVIDERS, ModelConfig, load_model_config
from vitbench.suites.options import check_choice, parse_choices, parse_positive_ints

SUITE = "model"
BASELINE = "hf-sdpa"
FP32_LIMIT = 1e-4  # rel err vs the float64 reference for exact fp32
HF_FACTOR = 1.5  # allowed multiple of HF's own error in the row's dtype


# --- models, built once per dtype and shared by the cases ------------------------------------
class ModelCache:
    """Builds HF / Triton models from one checkpoint; keeps those of the current dtype only."""

    def __init__(self, ckpt: Checkpoint):
        self.ckpt = ckpt
        self._models: dict[tuple, Any] = {}

    def get(self, kind: str, dtype: torch.dtype, precision: str = "ieee"):
        key = (kind, dtype, precision if kind == "triton" else "")
        if key not in self._models:
            # Drop models of other dtypes (except the float64 reference) before building.
            for k in [k for k in self._models if k[1] not in (dtype, torch.float64)]:
                del self._models[k]
            if kind == "triton":
                m = TritonViT(self.ckpt.spec, self.ckpt.local, precision=precision or "ieee")
                m = m.to(device=DEVICE, dtype=dtype)
            else:
                m = checkpoints.hf_model(self.ckpt, dtype=dtype, device=DEVICE, attn_implementation=kind)
            self._models[key] = m.eval()
        return self._models[key]

    def hf_fresh(self, dtype: torch.dtype, attn: str):
        """An HF model nobody else holds (torch.compile wraps and caches it)."""
        return checkpoints.hf_model(self.ckpt, dtype=dtype, device=DEVICE, attn_implementation=attn)


def _pick(out) -> torch.Tensor:
    """The tensor every provider returns: logits, or last_hidden_state without a head."""
    if isinstance(out, tuple):  # TritonViT: (last_hidden_state, pooler_output, logits)
        return out[2] if out[2] is not None else out[0]
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


# --- providers -------------------------------------------------------------------------------
@dataclass
class ModelCase(Case):
    precision_kernels: str = "ieee"  # what the Triton kernels use (the row's precision for fp32)


def _reference(models: ModelCache, case: ModelCase, x: torch.Tensor) -> torch.Tensor:
    """float64 HF eager logits; sets the case's limit: FP32_LIMIT for fp32 other than tf32, else from HF's
    own error in the row's dtype (the larger of HF eager's and HF SDPA's, so both HF baselines
    pass their own gate), never below FP32_LIMIT."""
    with torch.inference_mode():
        ref = _pick(models.get("eager", torch.float64)(pixel_values=x.double()))
        if case.dtype == "fp32" and case.precision != "tf32":
            case.tolerance = FP32_LIMIT
            return ref
        own = max(rel_err(_pick(models.get(attn, x.dtype)(pixel_values=x)), ref)
                  for attn in ("eager", "sdpa"))
    case.tolerance = max(FP32_LIMIT, HF_FACTOR * own)
    if case.precision == "tf32" and x.device.type != "cuda":
        # off CUDA, torch has no TF32: HF's "tf32" rows are exact fp32 and say nothing of TF32's
        # error, so the library's TF32 limit (numerics.TOLERANCE) stands in for 1.5 x HF's
        case.tolerance = max(case.tolerance, tolerance(torch.float32, "tf32"))
    return ref


def _prepare_triton(models: ModelCache, graphs: bool, cls_only: bool, case: ModelCase,
                    x: torch.Tensor):
    model = models.get("triton", x.dtype, case.precision_kernels)

    def forward(px: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return _pick(model(px, logits_only=cls_only))  # no effect without a head

    if not graphs:
        return lambda: forward(x)
    runner = GraphRunner(forward)
    runner.capture(x, adopt=True)  # x itself is the static input: no copy per call
    return lambda: runner(x)


def _prepare_hf(models: ModelCache, attn: str, case: ModelCase, x: torch.Tensor):
    model = models.get(attn, x.dtype)

    def fn():
        with torch.inference_mode():
            return _pick(model(pixel_values=x))
    return fn


def _prepare_compile(models: ModelCache, mode: str, case: ModelCase, x: torch.Tensor):
    torch._dynamo.reset()  # one compile per batch size, nothing reused from another case
    compiled = torch.compile(models.hf_fresh(x.dtype, "sdpa"), mode=mode, dynamic=False)
    graphs = ON_GPU and mode in ("reduce-overhead", "max-autotune")

    def fn():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.inference_mode():
            return _pick(compiled(pixel_values=x))
    return fn


def build_providers(names: list[str], models: ModelCache, *, graphs: bool, compile_mode: str,
                    cls_only: bool = False) -> list[Provider]:
    make: dict[str, Callable] = {
        "triton": functools.partial(_prepare_triton, models, graphs, cls_only),
        "hf-eager": functools.partial(_prepare_hf, models, "eager"),
        "hf-sdpa": functools.partial(_prepare_hf, models, "sdpa"),
        "torch-compile": functools.partial(_prepare_compile, models, compile_mode),
    }
    return [Provider(n, make[n], is_baseline=n == BASELINE) for n in names]


# --- cases -----------------------------------------------------------------------------------
def build_cases(label: str, models: ModelCache, batches: list[int], dtypes: list[str],
                precisions: list[str], repeats: Repeats | None) -> list[ModelCase]:
    spec = models.ckpt.spec
    cases = []
    for dtype in dtypes:
        dt = torch_dtype(dtype)
        s = torch.finfo(dt).bits // 8
        for prec in (precisions if dtype == "fp32" else [""]):
            for B in batches:
                # short on purpose (it is a table column): image side, patch, width, depth
                shape = {"B": B, "img": spec.image_h, "p": spec.patch, "D": spec.dim, "L": spec.layers}
                out_elems = B * (spec.num_labels or spec.tokens * spec.dim)
                # bytes: weights read once + pixels read + output written (activations excluded)
                nbytes = s * (spec.num_params() + B * spec.channels * spec.image_h * spec.image_w
                              + out_elems)
                case = ModelCase(
                    suite=SUITE, op=label, case=f"b{B}", dtype=dtype, shape=shape,
                    inputs=functools.partial(_pixels, spec, B, dt),
                    reference=lambda x: x,  # replaced below (needs the case itself)
                    precision=prec, batch=B, size=B, flops=spec.flops(B), bytes=nbytes, items=B,
                    repeats=repeats, precision_kernels=prec or "ieee",
                )
                case.reference = functools.partial(_reference, models, case)
                cases.append(case)
    return cases


def _pixels(spec, B: int, dt: torch.dtype) -> torch.Tensor:
    x = torch.rand(B, spec.channels, spec.image_h, spec.image_w, device=DEVICE)
    return (x * 2 - 1).to(dt)  # [B, C, H, W] in [-1, 1], like ViTImageProcessor output


# --- plan + run ------------------------------------------------------------------------------
@dataclass(kw_only=True)
class ModelPlan(SuitePlan):
    label: str  # the CSV's `op` column: model name, or the weights' folder / hub id
    ckpt: Checkpoint

    def summary(self) -> str:
        return (f"model {self.label}: weights {self.ckpt.source}; providers "
                f"{', '.join(p.name for p in self.providers)}; timer {self.timer}")


def default_config_path() -> Path | None:
    """configs/model.yaml beside the package, else in the current folder (None: built-ins)."""
    return find_config("model.yaml")


def plan_model(*, batch: str | None = None, model: str | None = None, dtype: str | None = None,
               providers: str | None = None, config: str | Path | None = None,
               weights: str | None = None, graphs: bool = True, timer: str | None = None,
               precision: str | None = None, compile_mode: str | None = None,
               cls_only: bool | None = None) -> ModelPlan:
    """Resolve what to run from the sweep file and the command-line overrides (None: the
    file's value)."""
    notes: list[str] = []
    batches = parse_positive_ints(batch, "batch") if batch is not None else None
    dtypes = parse_choices(dtype, "dtype", DTYPES) if dtype is not None else None
    provs = parse_choices(providers, "providers", PROVIDERS) if providers is not None else None
    precs = parse_choices(precision, "precision", PRECISIONS) if precision is not None else None
    if timer is not None:
        check_choice(timer, "timer", TIMERS, "timer")
    if compile_mode is not None:
        check_choice(compile_mode, "compile-mode", COMPILE_MODES, "mode")
    if model is not None:
        hf_config(model)  # unknown name -> one-line error before anything slow
    path = config if config is not None else default_config_path()
    cfg: ModelConfig = load_model_config(path)
    if not ON_GPU:
        cfg = cfg.for_interpreter()
        defaults = [f"model {cfg.model}"] if model is None else []
        defaults += [f"batches {cfg.batches}"] if batches is None else []
        defaults += [", ".join(cfg.dtypes)] if dtypes is None else []
        small = f", small defaults ({', '.join(defaults)})" if defaults else ""
        notes.append(f"no GPU: Triton interpreter{small}; timings are not representative")
    name = model or cfg.model
    batches, dtypes = batches or cfg.batches, dtypes or cfg.dtypes
    if precs is not None and "fp32" not in dtypes:
        notes.append(f"--precision {','.join(precs)} applies to fp32 rows only; no fp32 here")
    provs, precs = provs or cfg.providers, precs or cfg.precisions
    timer = timer or ("host" if not ON_GPU else cfg.timer)
    mode = compile_mode or (cfg.compile_mode if ON_GPU else "default")
    use_graphs = graphs and cfg.graphs and ON_GPU
    if use_graphs and timer == "graph":
        use_graphs = False
        notes.append("timer 'graph' captures every provider itself: triton runs without its own graphs")
    if not ON_GPU and "bf16" in dtypes:
        notes.append("interpreter: bf16 tl.dot is wrong in Triton's interpreter (triton#11584); "
                     "expect bf16 triton rows to fail the gate")
    ckpt = checkpoints.load(weights or cfg.weights, name)
    # what the triton provider really runs: a headless checkpoint has no CLS-only path
    use_cls = (cfg.cls_only if cls_only is None else cls_only) and ckpt.spec.num_labels > 0
    label = model or (name if (weights or cfg.weights) == "random" else _weights_label(weights or cfg.weights))
    models = ModelCache(ckpt)
    reps = cfg.repeats.to_repeats() if ON_GPU else None
    cases = build_cases(label, models, batches, dtypes, precs, reps)
    resolved = {
        "suite": SUITE, "model": label, "weights": ckpt.source, "hf_config": ckpt.config.to_dict(),
        "batches": batches, "dtypes": dtypes, "precisions": precs, "providers": provs,
        "baseline": BASELINE, "graphs": use_graphs, "cls_only": use_cls, "compile_mode": mode,
        "timer": timer,
        "attention": {"hf-eager": "eager", "hf-sdpa": "sdpa", "torch-compile": "sdpa"},
        "reference": "HF eager float64",
        "gate": f"rel_err <= {FP32_LIMIT} for fp32 other than tf32, else <= max({FP32_LIMIT}, {HF_FACTOR} x "
                "max(HF eager, HF SDPA) rel_err in the dtype; tf32 off CUDA: >= 0.001); "
                "max|out-ref| <= min(10 x that, 0.25) x max|ref|",
        # --resume refuses when these differ from the run's (batches, dtypes, ... may differ)
        "resume_keys": ["model", "weights", "hf_config", "graphs", "cls_only", "compile_mode",
                        "timer", "attention", "reference", "gate"],
    }
    for k in ("transformers_version", "id2label", "label2id"):  # noise in the config hash
        resolved["hf_config"].pop(k, None)
    runners = build_providers(provs, models, graphs=use_graphs, compile_mode=mode, cls_only=use_cls)
    return ModelPlan(suite=SUITE, cases=cases, providers=runners, timer=timer, config=resolved,
                     notes=notes, label=label, ckpt=ckpt)


def _weights_label(weights: str) -> str:
    return Path(weights).name if Path(weights).is_dir() else weights


def run_model(plan: ModelPlan, *, out_dir: str | Path | None = None, resume: bool = False,
              progress: bool = True, console=None) -> RunResult:
    """Run the plan through the shared engine; rows go to <out_dir>/model-<run_id>.csv."""
    return run_plan(plan, out_dir=out_dir, resume=resume, progress=progress, console=console)
