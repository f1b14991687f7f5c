"""Write realistic result runs (CSV + meta + samples, as declared in vitbench.bench.schema).

Used by the report/compare tests instead of running the (slow, GPU-bound) benchmark suites.
Timings are drawn from a lognormal around a roofline-ish model of each case, so the numbers look
like a real H100 run (or an interpreter run), and rows are computed from the samples exactly as a
runner would: median, p10/p90, IQR noise, TFLOP/s, GB/s, % of peak.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vitbench.bench.schema import COLUMNS, ROW_KEY, SCHEMA_VERSION

H100 = {"backend": "cuda", "name": "NVIDIA H100 80GB HBM3", "sm_count": 132, "memory_gib": 79.1,
        "compute_capability": "9.0", "driver": "580.95.05", "cuda": "13.0"}
CPU = {"backend": "interpreter", "name": "cpu (Triton interpreter)", "sm_count": None,
       "memory_gib": None, "compute_capability": None, "driver": None, "cuda": None}
PEAKS = {"copy_gbps": 3000.0, "gemm_tflops": {"bf16": 750.0, "fp16": 740.0, "tf32": 380.0,
                                               "fp32": 51.0}}
VERSIONS = {"python": "3.11.2", "torch": "2.11.0+cu130", "triton": "3.6.0",
            "transformers": "5.17.0", "vitbench": "0.1.0"}
ELT = {"fp32": 4, "fp16": 2, "bf16": 2}


def _case(op, case, provider, dtype, precision, shape, size, flops, nbytes, ms, batch=None,
          ok=True, err=0.0, error="", noise_sigma=0.02):
    return dict(op=op, case=case, provider=provider, dtype=dtype, precision=precision, shape=shape,
                size=size, flops=flops, bytes=nbytes, ms=ms, batch=batch, ok=ok, max_rel_err=err,
                error=error, sigma=noise_sigma)


def kernel_cases(op_names: dict[str, str] | None = None) -> list[dict]:
    """Kernel cases: matmul (compute bound), layernorm (memory bound), attention; 2 providers."""
    names = {"matmul": "matmul", "layernorm": "layernorm", "attention": "attention",
             **(op_names or {})}
    cases = []
    eff = {"triton": 0.62, "torch": 0.70}  # fraction of peak reached
    for dtype, prec in (("fp16", ""), ("fp32", "tf32")):
        peak = PEAKS["gemm_tflops"]["tf32" if prec else dtype]
        for label, n in (("fc1", 3072), ("qkv", 2304)):  # two sweeps over the token count M
            for b in (1, 8, 32, 128):
                m, k = 197 * b, 768
                flops, nbytes = 2 * m * n * k, (m * k + n * k + m * n) * ELT[dtype]
                for prov in ("triton", "torch"):
                    ms = flops / (eff[prov] * peak * 1e9) * (1 + 8 / b) + 0.006
                    cases.append(_case(names["matmul"], label, prov, dtype, prec,
                                       f"M={m};N={n};K={k}", m, flops, nbytes, ms,
                                       err=2e-4 if prec else 3e-3))
    for dtype in ("fp16", "fp32"):
        for m in (197, 1576, 6304, 25216):
            n = 768
            flops, nbytes = 8 * m * n, (2 * m * n + 2 * n) * ELT[dtype]
            for prov in ("triton", "torch"):
                ms = nbytes / ({"triton": 0.8, "torch": 0.55}[prov] * 3000 * 1e6) + 0.004
                bad = prov == "triton" and dtype == "fp16" and m == 1576
                cases.append(_case(names["layernorm"], "rows", prov, dtype, "",
                                   f"M={m};N={n}", m * n, flops, nbytes, ms, ok=not bad,
                                   err=4e-2 if bad else 1e-3,
                                   noise_sigma=0.25 if (prov == "torch" and m == 197) else 0.02))
    for b in (1, 8, 32):
        t, h, d = 197, 12, 64
        flops, nbytes = 4 * b * h * t * t * d, 4 * b * h * t * d * 2
        for prov in ("triton", "torch"):
            ms = flops / ({"triton": 0.35, "torch": 0.45}[prov] * 740 * 1e9) + 0.01
            oom = prov == "triton" and b == 32
            cases.append(_case(names["attention"], "batch", prov, "fp16", "",
                               f"B={b};H={h};T={t};d={d}", b * t, flops, nbytes, ms,
                               ok=not oom, err=2e-3, error="CUDA out of memory" if oom else ""))
    return cases


MODEL_MS = {  # bf16 ms per forward at batch 1, 8, 32 (hf/compile from ANCHORS.md)
    "hf-eager": (7.83, 10.94, 11.31), "hf-sdpa": (7.36, 7.65, 7.15),
    "torch-compile": (5.45, 3.50, 6.55), "triton": (2.9, 2.6, 6.1),
}


def model_cases(model: str = "vit-b16") -> list[dict]:
    cases = []
    for i, b in enumerate((1, 8, 32)):
        for prov, times in MODEL_MS.items():
            cases.append(_case(model, f"b{b}", prov, "bf16", "", f"batch={b};image=224", b,
                               35.1e9 * b, 173e6 + b * 3 * 224 * 224 * 2, times[i], batch=b,
                               err=3e-3))
    return cases


def _rows(cases, suite, run_id, device, backend, rng, slow, n, peaks):
    rows, samples = [], []
    for c in cases:
        factor = slow.get(c["op"], 1.0) * slow.get(c["provider"], 1.0)
        base = c["ms"] * factor * (400.0 if backend == "interpreter" else 1.0)
        row = {k: "" for k in COLUMNS}
        row.update(schema_version=SCHEMA_VERSION, run_id=run_id, timestamp="2026-11-27T05:15:00Z",
                   suite=suite, op=c["op"], case=c["case"], provider=c["provider"],
                   dtype=c["dtype"], precision=c["precision"], shape=c["shape"],
                   batch="" if c["batch"] is None else c["batch"], size=c["size"], timer="warm",
                   backend=backend, device=device["name"], flops=c["flops"], bytes=c["bytes"],
                   baseline="hf-eager" if suite == "model" else "torch", ok=c["ok"],
                   max_rel_err=c["max_rel_err"], error=c["error"], config_hash="3f2a9c1d0e7b",
                   compile_s=12.5 if c["provider"] == "torch-compile" else "")
        key = [str(row[k]) for k in ROW_KEY]
        if not c["error"]:
            s = base * rng.lognormal(0.0, c["sigma"], n)
            q10, q25, q50, q75, q90 = np.percentile(s, [10, 25, 50, 75, 90])
            tflops = c["flops"] / q50 / 1e9
            gbps = c["bytes"] / q50 / 1e6
            bound = c["flops"] / c["bytes"] > 20
            peak = (peaks["gemm_tflops"]["tf32" if c["precision"] == "tf32" else c["dtype"]]
                    if bound else peaks["copy_gbps"])
            row.update(median_ms=q50, p10_ms=q10, p90_ms=q90, mean_ms=s.mean(), std_ms=s.std(),
                       n=n, noise=(q75 - q25) / q50, tflops=tflops, gbps=gbps,
                       pct_of_peak=100 * (tflops if bound else gbps) / peak,
                       items_per_s=(c["batch"] / q50 * 1e3) if c["batch"] else "")
            samples.append({"key": key, "samples_ms": [float(x) for x in s]})
        rows.append(row)
    # speedup_vs_baseline as the runner states it: baseline median / this median, ok rows only
    by_key = {(r["op"], r["case"], r["dtype"], r["precision"], r["shape"], r["provider"]): r
              for r in rows}
    for r in rows:
        b = by_key.get((r["op"], r["case"], r["dtype"], r["precision"], r["shape"], r["baseline"]))
        if b and r["ok"] and b["ok"] and r["median_ms"] != "" and b["median_ms"] != "":
            r["speedup_vs_baseline"] = b["median_ms"] / r["median_ms"]
    return rows, samples


def write_run(folder: Path, suite: str = "kernels", *, run_id: str = "20261127T051500Z-3f2a",
              device: dict | None = None, seed: int = 0, slow: dict[str, float] | None = None,
              n: int = 50, cases: list[dict] | None = None, versions: dict | None = None,
              samples: bool = True) -> Path:
    """Write one run's three files into folder; return the CSV path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = device or H100
    backend = device["backend"]
    if cases is None:
        cases = kernel_cases() if suite == "kernels" else model_cases()
    rng = np.random.default_rng(seed)
    peaks = PEAKS if backend == "cuda" else {"copy_gbps": 12.0, "gemm_tflops": {
        "bf16": 1.2, "fp16": 1.2, "tf32": 0.6, "fp32": 0.6}}
    rows, samp = _rows(cases, suite, run_id, device, backend, rng, slow or {}, n, peaks)
    stem = folder / f"{suite}-{run_id}"
    with open(f"{stem}.csv", "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for r in rows:
            f.write(",".join(_cell(r[c]) for c in COLUMNS) + "\n")
    meta = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "suite": suite,
            **_span(run_id),
            "backend": backend, "device": device, "versions": versions or VERSIONS,
            "git_commit": "b542f5d", "config": {"suite": suite, "dtypes": ["fp16", "fp32"],
                                                "warmup_ms": 25, "rep_ms": 100},
            "config_hash": "3f2a9c1d0e7b", "peaks": peaks,
            "note": None if backend == "cuda" else
            "no CUDA GPU: Triton kernels run in the interpreter, timings not representative"}
    Path(f"{stem}.meta.json").write_text(json.dumps(meta, indent=2))
    if samples:
        Path(f"{stem}.samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samp))
    return Path(f"{stem}.csv")


def _span(run_id: str) -> dict[str, str]:
    """created / finished of a fixture run: from its run id's timestamp (as the engine names runs),
    finished 6 min 40 s later; 05:15:00Z for ids without one."""
    import datetime as dt

    try:
        start = dt.datetime.strptime(run_id.partition("-")[0], "%Y%m%dT%H%M%SZ")
    except ValueError:
        start = dt.datetime(2026, 11, 27, 5, 15)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"created": start.strftime(fmt), "finished": (start + dt.timedelta(seconds=400)).strftime(fmt)}


def _cell(v) -> str:
    s = str(v)
    if any(ch in s for ch in ',"\n'):
        return '"' + s.replace('"', '""') + '"'
    return s
