"""Layernorm and softmax at issue 6's ViT-B/16 batch-256 shapes, per row-tile size, as shares of
the copy bandwidth measured in the same process (the kernel targets ask for >= 85%).

The row kernels pack several rows per program until it holds `_common._TARGET_ELEMS` elements
(`row_tiles`); the autotuner then picks the warps. This probe sets that target to each of
--elems, checks each output against float64 and times it (CUDA graph, L2 flushed before each
replay: the `cold` timer of the suites), next to torch's and a plain device copy of the same bytes.

    python tools/row_probe.py                         # bf16, elems 1024 .. 16384
    python tools/row_probe.py --dtype fp32 --elems 4096 8192
"""

from __future__ import annotations

import argparse

import vitbench  # noqa: F401,I001  (first: selects the Triton backend before triton is imported)
import torch
import torch.nn.functional as F

from vitbench.bench.peaks import measure_copy_gbps
from vitbench.kernels import _common, layernorm, softmax
from vitbench.kernels._common import dtype_from_name, graph_ms
from vitbench.numerics import rel_err, tolerance


def _row(name: str, ms: float, nbytes: int, copy_gbps: float, err: float | None = None) -> str:
    gbps = nbytes / ms / 1e6
    e = "" if err is None else f"  rel err {err:.1e}"
    return f"{name:<28} {ms * 1e3:9.1f} us {gbps:8.0f} GB/s {100 * gbps / copy_gbps:5.1f}% of copy{e}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="bf16", help="bf16, fp16 or fp32 (default bf16)")
    p.add_argument("--elems", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                   help="row-tile sizes to try (elements per program, powers of 2)")
    p.add_argument("--batch", type=int, default=256, help="ViT-B/16 batch (default 256)")
    p.add_argument("--rep", type=int, default=100, help="ms of replays per timing (default 100)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        p.error("needs a CUDA GPU")
    dt = dtype_from_name(args.dtype)
    tol = tolerance(dt)
    B, T, D, H = args.batch, 197, 768, 12
    x = torch.randn(B, T, D, device="cuda").to(dt)
    w, b = torch.randn(D, device="cuda").to(dt), torch.randn(D, device="cuda").to(dt)
    s = torch.randn(B, H, T, T, device="cuda").to(dt)
    ln_ref = F.layer_norm(x.double(), (D,), w.double(), b.double(), 1e-6)
    sm_ref = torch.softmax(s.double(), -1)
    ln_bytes, sm_bytes = 2 * x.numel() * x.element_size(), 2 * s.numel() * s.element_size()
    copy = measure_copy_gbps()
    print(f"{torch.cuda.get_device_name()}  {args.dtype}  batch {B}  copy {copy:.0f} GB/s")
    src, dst = torch.empty_like(s), torch.empty_like(s)
    print(_row("device copy (softmax bytes)", graph_ms(lambda: dst.copy_(src), args.rep, cold=True), sm_bytes, copy))
    print(_row("torch layer_norm", graph_ms(lambda: F.layer_norm(x, (D,), w, b, 1e-6), args.rep, cold=True),
               ln_bytes, copy))
    print(_row("torch softmax", graph_ms(lambda: torch.softmax(s, -1), args.rep, cold=True), sm_bytes, copy))
    default = _common._TARGET_ELEMS
    try:
        for elems in args.elems:
            _common._TARGET_ELEMS = elems
            tag = f"elems {elems}" + (" (default)" if elems == default else "")
            err = rel_err(layernorm(x, w, b, 1e-6), ln_ref)
            ms = graph_ms(lambda: layernorm(x, w, b, 1e-6), args.rep, cold=True)
            print(_row(f"layernorm {tag}", ms, ln_bytes, copy, err) + ("" if err < tol else "  FAIL"))
            err = rel_err(softmax(s), sm_ref)
            ms = graph_ms(lambda: softmax(s), args.rep, cold=True)
            print(_row(f"softmax {tag}", ms, sm_bytes, copy, err) + ("" if err < tol else "  FAIL"))
    finally:
        _common._TARGET_ELEMS = default
    for line in _common.autotune_picks():
        if "layernorm" in line or "softmax" in line:
            print("pick:", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
