"""The result table, declared once: column names and order of every CSV vitbench writes.

Files of one run (in the output folder, default ``results/<device>/``):
  ``<suite>-<run_id>.csv``           one row per (case, provider), columns below, written row by row
  ``<suite>-<run_id>.meta.json``     run metadata: device, versions, config + hash, measured peaks
  ``<suite>-<run_id>.samples.jsonl`` raw timing samples, one JSON object per row:
                                     {"key": [..ROW_KEY values..], "samples_ms": [...]}
"""

from __future__ import annotations

SCHEMA_VERSION = 1

COLUMNS: list[str] = [
    "schema_version",
    "run_id",
    "timestamp",  # ISO 8601, UTC, when the row was measured
    "suite",  # "kernels" or "model"
    "op",  # kernel op (matmul, attention, ...) or model name for suite=model
    "case",  # short case label within the op, e.g. "fc1" or "b32"
    "provider",  # triton, torch, torch-compile, hf-eager, hf-sdpa, ...
    "dtype",  # fp32, fp16, bf16
    "precision",  # fp32 matmuls: ieee / tf32 / bf16x6 / tf32x3 / bf16x3, "" otherwise
    "shape",  # canonical "K=V;K=V" string of the shape parameters
    "batch",  # batch size where the case has one (model suite, vit set), else empty
    "size",  # one number that orders cases on a chart x-axis (elements, M, tokens...)
    "timer",  # cold, warm, graph, host
    "backend",  # cuda or interpreter
    "device",  # GPU name or "cpu (Triton interpreter)"
    "median_ms",
    "p10_ms",
    "p90_ms",
    "mean_ms",
    "std_ms",
    "n",  # timed repetitions
    "noise",  # IQR / median
    "flops",  # FLOPs of one call (formula stated per op)
    "bytes",  # bytes of one call: each input read once, each output written once
    "tflops",
    "gbps",
    "pct_of_peak",  # of the peak measured on this device in this run (compute or memory bound)
    "items_per_s",  # images/s for the model suite, else empty
    "baseline",  # the provider speedups are measured against
    "speedup_vs_baseline",  # baseline median / this median; empty when either row is not ok
    "max_rel_err",  # ||out - ref|| / ||ref|| vs a higher-precision reference
    "ok",  # correctness gate passed
    "error",  # error text when the case failed (OOM, kernel error), else empty
    "compile_s",  # torch.compile / autotune time, never inside latency
    "config_hash",
]

# A row is identified (for --resume and `vitbench compare`) by these columns.
ROW_KEY: list[str] = ["suite", "op", "case", "provider", "dtype", "precision", "shape", "timer"]

# Keys of ``<suite>-<run_id>.meta.json`` (written once at the start of a run, updated at its end):
META_KEYS: dict[str, str] = {
    "schema_version": "int, SCHEMA_VERSION",
    "run_id": "str, e.g. 20261127T051500Z-3f2a",
    "suite": "kernels | model",
    "created": "ISO 8601 UTC start time",
    "finished": "ISO 8601 UTC end time, null while running or after a crash",
    "backend": "cuda | interpreter",
    "device": "dict: vitbench.envinfo.DeviceInfo as a dict",
    "versions": "dict: python, torch, triton, transformers, vitbench",
    "settings": "dict: VITBENCH_* variables that change what runs (e.g. VITBENCH_MATMUL=tma)",
    "git_commit": "str or null (VITBENCH_GIT_COMMIT where the tree is not a git checkout)",
    "config": "dict: the resolved sweep config",
    "config_hash": "str: sha256 of the resolved config, first 12 hex digits",
    "peaks": "dict: copy_gbps (float|null), gemm_tflops {bf16, fp16, fp32, tf32: float|null}, "
             "measured on this device in this run",
    "sdpa_backends": "dict {flash, mem_efficient, math, cudnn: bool} of the SDPA backends torch "
                     "may use (torch.backends.cuda.*_sdp_enabled), null without a GPU",
    "note": "str or null: e.g. the interpreter's 'timings not representative'",
}
