"""The measurement engine every suite uses: cases x providers -> gated, timed rows in a CSV.

API (stable; suites build `Case`s and `Provider`s and call `run_suite`). `Case`, `Provider` and
`Repeats` live in `vitbench.bench.case` and are re-exported here.
-----------------------------------------------------------------------------------------------
``Case``  one thing to measure (an op at one shape/dtype, or a model at one batch size):
    suite, op, case (short label), dtype ("fp32"|"fp16"|"bf16"), shape (dict of parameters),
    inputs() -> fresh random inputs (any object; handed to prepare() and reference()),
    reference(inputs) -> tensor or tuple of tensors in higher precision (float64) for the gate,
    and optionally precision (fp32 matmuls: "ieee", "tf32" or a split mode, vitbench.kernels._common.PRECISIONS; else ""), batch, size (x-axis
    number), flops and bytes of one call (formulas stated by the suite), items per call
    (images -> items_per_s), tolerance (default `numerics.tolerance(dtype, precision)`),
    compare(out, ref) -> float (default: max ||out-ref||/||ref|| over the tensors),
    repeats (a `Repeats` for this case instead of the run's).
    The runner sets torch's TF32 switches (matmul and cuDNN) to ``precision == "tf32"`` while the
    case runs, so eager PyTorch computes in the same precision as the row says.

``Provider``  one way to run a case:
    name, prepare(case, inputs) -> fn, is_baseline (speedups are baseline median / this median),
    supports(case) -> None or a reason string (row recorded with error "skipped: <reason>").
    ``fn()`` must take no arguments, allocate its outputs itself (every provider alike) and
    return the output(s) to check. Everything slow (torch.compile, graph capture, building
    modules) belongs in prepare(); compile_s = prepare() + the first call (JIT, autotune).

``run_suite(suite, cases, providers, *, out_dir, timer="cold", hold=False, resume=False,
config=None, repeats=None, progress=True, console=None, seed=0, baseline=None, resume_keys=None)
-> RunResult``
    1. measures the peaks once (`peaks.measure_peaks`), writes ``<suite>-<run_id>.meta.json``;
    2. per case, inside torch.inference_mode() and the case's TF32 mode: fresh inputs, then the
       reference (before any provider runs, so it may still set ``case.tolerance``), then per
       provider: prepare, the correctness gate (several freed blocks of each output's size
       filled with NaN first, so an unwritten output fails; besides the norm, every element must
       be within `measure.elem_limit` x max|ref|), warm-up outside timing;
    3. times the providers interleaved in a new shuffled order every round (A B, B A, ...),
       repetitions adapted to ``repeats.budget_s`` within [min_reps, max_reps];
    4. writes the case's rows (`schema.COLUMNS`) to ``<suite>-<run_id>.csv`` and raw samples to
       the ``.samples.jsonl`` sidecar, flushed per case; errors (CUDA OOM, kernel or compile
       errors) go to the row's ``error`` column and the sweep continues;
    5. shows a progress bar with ETA, warns about rows with noise (IQR/median) > 10 %, prints a
       summary table, and marks the metadata finished.
    A provider that fails the gate is still timed but gets ok=false and no speedup; a row with
    an error has ok=false and empty timings. Ctrl-C (KeyboardInterrupt) or SIGTERM keeps every
    finished case, closes the files and re-raises KeyboardInterrupt.
    ``resume=True`` appends to the newest ``<suite>-*.csv`` in out_dir and skips rows whose
    ROW_KEY is already there (the run id, peaks and metadata of that run are kept); rows that
    errored (OOM, compile crash; not "skipped: ..." ones) are measured again, and readers take
    the last row per ROW_KEY. It refuses (VitbenchError) when the VITBENCH_* settings or a
    config entry named in ``resume_keys`` differ from the run's metadata (`metadata.
    resume_mismatch`; "name.*" compares each entry of a dict that both runs have, e.g. config
    files); lists of cases (batches, dtypes, providers, ops) may differ, that is what resume is for.
    ``baseline`` names the provider speedups are against (default: config["baseline"], else the
    provider with is_baseline), so its rows already in the CSV count when it is not selected;
    ``resume_keys`` defaults to config["resume_keys"]. The final summary covers every row of the
    run, kept and new.
    ``timer`` is a name from `timers.TIMERS` or a `timers.Timer`; in the interpreter only "host".
    ``hold=True`` makes a named device timer sleep the GPU while the host enqueues each chunk of
    repetitions, so launch latency never lands inside a sample (`timers` docstring; the kernels
    suite uses it, the model suite does not; ignored for a `Timer` instance and by "host"). A
    suite that holds records it in its config and resume_keys, so --resume keeps it alike.

``Repeats(budget_s=0.25, min_reps=10, max_reps=1000, warmup_s=0.03, min_warmup=2)``: timed wall
    time per case (all providers together) and its clamps; ``Repeats.for_backend()`` gives the
    defaults, or 2 repetitions in the interpreter.

``RunResult``: run_id, csv_path, meta_path, samples_path, rows (the dicts written this call),
    skipped (rows already present when resuming), peaks.

Also exported: ``error_text(exc)`` (the one-line error of a row), ``max_rel_err(out, ref)``,
``precision_mode(precision)`` (the TF32 context manager).
"""

from __future__ import annotations

import math
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from rich.console import Console

from vitbench._backend import BACKEND, HAS_CUDA, INTERPRETER, INTERPRETER_NOTE
from vitbench.bench import csvio, peaks as peaks_mod
from vitbench.bench.case import Case, Provider, Repeats
from vitbench.bench.measure import Slot, error_text, max_rel_err, precision_mode, run_case
from vitbench.bench.metadata import (
    autotune_picks, build_meta, config_hash, kernel_choices, new_run_id, read_meta, resume_mismatch,
    utc_now, write_meta,
)
from vitbench.bench.progress import case_progress
from vitbench.bench.schema import SCHEMA_VERSION
from vitbench.bench.stats import NOISE_WARN
from vitbench.bench.summary import print_summary
from vitbench.bench.timers import Timer, make_timer
from vitbench.envinfo import device_info
from vitbench.errors import VitbenchError

__all__ = ["Case", "Provider", "Repeats", "RunResult", "run_suite", "error_text", "max_rel_err",
           "precision_mode"]

_ON_GPU = HAS_CUDA and not INTERPRETER


@dataclass
class RunResult:
    run_id: str
    csv_path: Path
    meta_path: Path
    samples_path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    peaks: dict[str, Any] = field(default_factory=dict)


def _provider_precision(provider, case: Case) -> str:
    """The matmul precision a provider really ran in: the row's for vitbench's own kernels; for
    torch / HF, "tf32" in tf32 rows, else exact fp32 (precision_mode turns TF32 off), as the
    tensor-core split modes are vitbench's alone."""
    if provider.name == "triton" or case.precision in ("", "tf32"):
        return case.precision
    return "ieee"


def _rows(case: Case, slots: list[Slot], base: dict | None, ctx: dict) -> list[dict[str, Any]]:
    """CSV rows of one case; `base` = baseline's {"median_ms", "ok"} (this run or the CSV)."""
    baseline = ctx["baseline"]
    rows = []
    for s in slots:
        st = s.stats
        ok = bool(s.gate_ok and s.error is None and st is not None)
        tfl = gbs = pct = None
        if st is not None:
            tfl, gbs, pct, _ = peaks_mod.roofline(case.flops, case.bytes, st.median_ms,
                                                  case.dtype, _provider_precision(s.provider, case),
                                                  ctx["peaks"])
        speedup = None
        if ok and base and base.get("ok") and base.get("median_ms"):
            speedup = float(base["median_ms"]) / st.median_ms
        rows.append({
            "schema_version": SCHEMA_VERSION, "run_id": ctx["run_id"], "timestamp": utc_now(),
            "suite": case.suite, "op": case.op, "case": case.case, "provider": s.provider.name,
            "dtype": case.dtype, "precision": case.precision, "shape": case.shape_str,
            "batch": case.batch, "size": case.size, "timer": ctx["timer"],
            "backend": BACKEND, "device": ctx["device"],
            "median_ms": st.median_ms if st else None, "p10_ms": st.p10_ms if st else None,
            "p90_ms": st.p90_ms if st else None, "mean_ms": st.mean_ms if st else None,
            "std_ms": st.std_ms if st else None, "n": st.n if st else None,
            "noise": st.noise if st else None,
            "flops": int(case.flops), "bytes": int(case.bytes),
            "tflops": tfl, "gbps": gbs, "pct_of_peak": pct,
            "items_per_s": case.items / (st.median_ms * 1e-3) if st and case.items else None,
            "baseline": baseline, "speedup_vs_baseline": speedup,
            "max_rel_err": s.err, "ok": ok, "error": s.error, "compile_s": s.compile_s,
            "config_hash": ctx["config_hash"],
        })
    return rows


def run_suite(
    suite: str,
    cases: Sequence[Case],
    providers: Sequence[Provider],
    *,
    out_dir: str | Path,
    timer: str | Timer = "cold",
    hold: bool = False,
    resume: bool = False,
    config: dict | None = None,
    repeats: Repeats | None = None,
    progress: bool = True,
    console: Console | None = None,
    seed: int = 0,
    baseline: str | None = None,
    resume_keys: Sequence[str] | None = None,
) -> RunResult:
    """Measure every (case, provider); see the module docstring."""
    if not providers:
        raise VitbenchError("no providers to run")
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise VitbenchError(f"provider names repeat: {names}")
    console = console or Console(stderr=True)
    tm = timer if isinstance(timer, Timer) else make_timer(timer, hold=hold)
    reps = repeats or Repeats.for_backend()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitbenchError(f"output folder {out}: cannot create it ({exc.strerror})") from None
    config = config or {}
    dev_name = device_info().name

    if resume_keys is None:
        resume_keys = config.get("resume_keys") or []
    existing: dict[tuple, dict[str, str]] = {}  # last row per ROW_KEY of the resumed run
    done: set[tuple] = set()  # keys not measured again (all but error rows)
    meta = None
    found = csvio.latest_run(out, suite) if resume else None
    if found:
        run_id, _ = found
        csv_path, meta_path, samples_path = csvio.run_paths(out, suite, run_id)
        existing = {csvio.row_key(r): r for r in csvio.read_rows(csv_path)}
        done = {k for k, r in existing.items() if not csvio.retry_on_resume(r)}
        meta = read_meta(meta_path)
        if meta and meta.get("device", {}).get("name") not in (None, dev_name):
            raise VitbenchError(f"{csv_path}: measured on {meta['device']['name']}, "
                                f"not on this device ({dev_name}); resume there or start anew")
        differs = resume_mismatch(meta, config, resume_keys) if meta else None
        if differs:
            raise VitbenchError(f"{csv_path}: cannot resume, {differs}; restore it or start a "
                                "new run (without --resume)")
        again = len(existing) - len(done)
        console.print(f"resuming run {run_id}: {len(existing)} rows already in {csv_path}"
                      + (f" ({again} errored, measured again)" if again else ""), soft_wrap=True)
    else:
        run_id = new_run_id()
        csv_path, meta_path, samples_path = csvio.run_paths(out, suite, run_id)
    if not _ON_GPU:
        console.print(f"[bold yellow]NOTE: {INTERPRETER_NOTE}[/]", soft_wrap=True)

    if meta is None:
        peaks = peaks_mod.measure_peaks()
        meta = build_meta(suite, run_id, config, peaks)
    peaks = meta["peaks"]
    meta["finished"] = None
    write_meta(meta_path, meta)
    chash = config_hash(config)
    if chash != meta["config_hash"]:
        console.print(f"[yellow]note:[/] the config differs from the one run {run_id} started "
                      f"with ({chash} vs {meta['config_hash']}); new rows carry {chash}",
                      soft_wrap=True)

    baseline = (baseline or config.get("baseline")
                or next((p.name for p in providers if p.is_baseline), None))
    ctx = {"run_id": run_id, "timer": tm.name, "device": dev_name, "peaks": peaks,
           "config_hash": chash, "baseline": baseline}
    result = RunResult(run_id, csv_path, meta_path, samples_path, peaks=peaks)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    writer = csvio.RowWriter(csv_path, samples_path)
    noisy = 0
    old_term = _sigterm_as_interrupt()
    try:
        with case_progress(len(cases), console, enabled=progress) as bar:
            for case in cases:
                bar.start(f"{case.op} {case.case} {case.dtype} {case.shape_str}")
                todo = [p for p in providers if _key(case, p.name, tm.name) not in done]
                result.skipped += len(providers) - len(todo)
                if todo:
                    slots = run_case(case, todo, tm, case.repeats or reps, rng)
                    base = _baseline_of(case, slots, existing, baseline, tm.name)
                    rows = _rows(case, slots, base, ctx)
                    writer.write(rows, [s.samples for s in slots])
                    result.rows.extend(rows)
                    for r in rows:
                        if r["noise"] is not None and r["noise"] > NOISE_WARN:
                            noisy += 1
                            if _ON_GPU:  # in the interpreter every row is noise; count only
                                bar.warn(f"noisy: {r['op']} {r['case']} {r['shape']} "
                                         f"{r['provider']}: IQR/median {100 * r['noise']:.0f}%")
                bar.advance()
    except KeyboardInterrupt:
        kept = len(set(existing) | {csvio.row_key(r) for r in result.rows})
        console.print(f"[bold yellow]interrupted:[/] {kept} rows kept "
                      f"in {csv_path}; rerun with --resume to finish", soft_wrap=True)
        raise
    finally:
        writer.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        choices, picks = kernel_choices(), autotune_picks()
        if choices:  # which kernel each GEMM shape ran on (VITBENCH_MATMUL=auto), also if cut short
            meta["kernel_choices"] = sorted(set(meta.get("kernel_choices") or []) | set(choices))
        if picks:  # which config each autotuned kernel ran per key (they differ between processes)
            meta["autotune_picks"] = sorted(set(meta.get("autotune_picks") or []) | set(picks))
        if choices or picks:
            write_meta(meta_path, meta)
    meta["finished"] = utc_now()
    write_meta(meta_path, meta)
    every = {k: csvio.typed_row(r) for k, r in existing.items()}
    every.update((csvio.row_key(r), r) for r in result.rows)  # a new row replaces an old one
    print_summary(list(every.values()), console, baseline)
    if noisy:
        console.print(f"[yellow]warning:[/] {noisy} row(s) noisy: IQR/median > "
                      f"{100 * NOISE_WARN:.0f}% (see the noise column)", soft_wrap=True)
    console.print(f"wrote {csv_path} ({len(result.rows)} new rows"
                  + (f", {result.skipped} kept from before" if result.skipped else "") + ")",
                  soft_wrap=True)
    return result


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (e.g. from `timeout`) ends the run like Ctrl-C; returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _key(case: Case, provider: str, timer: str) -> tuple[str, ...]:
    return csvio.row_key({"suite": case.suite, "op": case.op, "case": case.case,
                          "provider": provider, "dtype": case.dtype, "precision": case.precision,
                          "shape": case.shape_str, "timer": timer})


def _baseline_of(case: Case, slots: list[Slot], existing: dict, baseline: str | None,
                 timer: str) -> dict | None:
    if baseline is None:
        return None
    for s in slots:
        if s.provider.name == baseline:
            ok = s.gate_ok and s.error is None and s.stats is not None
            return {"ok": ok, "median_ms": s.stats.median_ms if s.stats else None}
    old = existing.get(_key(case, baseline, timer))
    if old is None:
        return None
    try:
        med = float(old["median_ms"]) if old["median_ms"] else None
    except ValueError:
        med = None
    return {"ok": old.get("ok") == "true", "median_ms": med if med and math.isfinite(med) else None}
