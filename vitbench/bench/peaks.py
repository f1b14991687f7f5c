"""Ceilings measured on this device in this run, and the roofline that turns rows into % of peak.

No hard-coded peak tables: `measure_peaks()` times
  * a device-to-device copy (GB/s counting bytes read + bytes written), and
  * a dense GEMM per dtype through torch.matmul (bf16, fp16, tf32 at 8192^3; fp32 ieee at 4096^3),
once per run; the result goes into the run metadata. In the interpreter every peak is None.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from vitbench._backend import HAS_CUDA, INTERPRETER

GEMM_KEYS = ("bf16", "fp16", "fp32", "tf32")
# GEMM size per peak: large enough to saturate an H100-class GPU, small enough to take < 1 s.
_GEMM_N = {"bf16": 8192, "fp16": 8192, "fp32": 4096, "tf32": 8192}
_COPY_BYTES = 1 << 30  # 1 GiB source, 1 GiB destination


def empty_peaks() -> dict[str, Any]:
    return {"copy_gbps": None, "gemm_tflops": {k: None for k in GEMM_KEYS}}


def _median_event_ms(fn: Callable[[], Any], reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    pairs = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        pairs.append((s, e))
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in pairs)
    return times[len(times) // 2]


def measure_copy_gbps(nbytes: int = _COPY_BYTES, reps: int = 20) -> float:
    """Device-to-device copy rate, counting read + write: 2 * nbytes / time."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms = _median_event_ms(lambda: dst.copy_(src), reps)
    del src, dst
    return 2 * nbytes / (ms * 1e-3) / 1e9


def measure_gemm_tflops(key: str, reps: int = 10) -> float:
    """Dense square GEMM rate via torch.matmul: 2 * n^3 FLOP / time, TF32 on only for "tf32"."""
    n = _GEMM_N[key]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(key, torch.float32)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
    try:
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        ms = _median_event_ms(lambda: torch.matmul(a, b), reps)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure_peaks() -> dict[str, Any]:
    """{"copy_gbps": float|None, "gemm_tflops": {bf16, fp16, fp32, tf32: float|None}}."""
    peaks = empty_peaks()
    if not HAS_CUDA or INTERPRETER:
        return peaks
    peaks["copy_gbps"] = round(measure_copy_gbps(), 1)
    for key in GEMM_KEYS:
        peaks["gemm_tflops"][key] = round(measure_gemm_tflops(key), 1)
    torch.cuda.empty_cache()
    return peaks


# fp32 split modes: (the tensor-core peak they run on, products per fp32 product)
SPLIT_MODES = {"tf32x3": ("tf32", 3), "bf16x3": ("bf16", 3), "bf16x6": ("bf16", 6)}


def gemm_key(dtype: str, precision: str) -> str:
    """Which GEMM peak applies to a row: its dtype, "tf32" for fp32 with TF32 on, or the
    tensor-core dtype an fp32 split mode runs on (SPLIT_MODES)."""
    if dtype == "fp32":
        if precision in SPLIT_MODES:
            return SPLIT_MODES[precision][0]
        return "tf32" if precision == "tf32" else "fp32"
    return dtype


def gemm_peak(peaks: dict | None, dtype: str, precision: str) -> float | None:
    """The GEMM ceiling (TFLOP/s) of a row: gemm_key's measured peak, divided by the products an
    fp32 split mode computes per fp32 product (bf16x6 at most 1/6 of the bf16 peak)."""
    gemm = (peaks.get("gemm_tflops") or {}).get(gemm_key(dtype, precision)) if peaks else None
    if gemm and dtype == "fp32" and precision in SPLIT_MODES:
        return gemm / SPLIT_MODES[precision][1]
    return gemm


def roofline(
    flops: float, nbytes: float, median_ms: float, dtype: str, precision: str, peaks: dict
) -> tuple[float | None, float | None, float | None, str]:
    """(tflops, gbps, pct_of_peak, bound) of one row.

    The bound is "compute" when the op's arithmetic intensity (FLOP per byte) is at or above the
    ridge point of this device (GEMM peak / copy bandwidth), else "memory"; % of peak is taken
    against that bound's measured ceiling (None when the peak was not measured).
    """
    if not median_ms or median_ms <= 0:
        return None, None, None, ""
    sec = median_ms * 1e-3
    tflops = flops / sec / 1e12 if flops else 0.0
    gbps = nbytes / sec / 1e9 if nbytes else 0.0
    copy = peaks.get("copy_gbps") if peaks else None
    gemm = gemm_peak(peaks, dtype, precision)
    if copy and gemm and flops and nbytes:
        ridge = gemm * 1e12 / (copy * 1e9)  # FLOP per byte where both ceilings meet
        if flops / nbytes >= ridge:
            return tflops, gbps, 100.0 * tflops / gemm, "compute"
    if copy and nbytes:
        return tflops, gbps, 100.0 * gbps / copy, "memory"
    bound = "compute" if flops and (not nbytes or flops / nbytes > 50) else "memory"
    return tflops, gbps, None, bound
