"""Accuracy of the GEMM epilogues' GELU forms, element by element, against float64 exact GELU.

For each form ("erf", "fit", "hw"; `vitbench/kernels/_gelu.py`) on a dense grid of fp32 inputs in
[-LIM, LIM]: the max abs error in fp32, where on the grid it is, the max relative error where
|gelu| >= 0.1 and >= 1, and then, for bf16 and fp16 outputs where |gelu| >= 0.01 (the deep negative
tail's tiny values are off in any form: their errors are absolute), the share of outputs that differ
from the correctly rounded exact GELU and the largest difference in units of the output's last place.
On a GPU the "hw" form runs tanh.approx.f32; under the interpreter it is the "fit" form's function.

    python tools/gelu_probe.py                 # 2^22 points in [-14, 14]
    python tools/gelu_probe.py --points 1000000 --lim 8
"""

from __future__ import annotations

import argparse

import vitbench  # noqa: F401,I001  (first: selects the Triton backend before triton is imported)
import torch
import torch.nn.functional as F

from vitbench._backend import DEVICE
from vitbench.kernels._gelu import gelu_eval


def ulp_diff(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """|got - ref| in units of the last place of `dtype` at ref's magnitude (both float64)."""
    info = torch.finfo(dtype)
    exp = torch.floor(torch.log2(ref.abs().clamp_min(info.smallest_normal)))
    return (got - ref).abs() / (torch.exp2(exp) * info.eps)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1 << 22, help="grid points")
    p.add_argument("--lim", type=float, default=14.0, help="grid half-width")
    args = p.parse_args()
    x = torch.linspace(-args.lim, args.lim, args.points, dtype=torch.float32, device=DEVICE)
    ref = F.gelu(x.double().cpu())
    xs = x.double().cpu()
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU (Triton interpreter)"
    print(f"{name}  torch {torch.__version__}  {args.points} points in [-{args.lim}, {args.lim}]")
    print(f"{'form':5} {'max abs':>9} {'at x':>8} {'rel|g|>=.1':>11} {'rel|g|>=1':>10}"
          f"  {'bf16 off':>9} {'max ulp':>8}  {'fp16 off':>9} {'max ulp':>8}")
    for form in ("erf", "fit", "hw"):
        got = gelu_eval(x, form).double().cpu()
        err = (got - ref).abs()
        cols = [f"{err.max().item():9.2e}", f"{xs[err.argmax()].item():8.3f}"]
        for lo in (0.1, 1.0):
            big = ref.abs() >= lo
            cols.append(f"{(err[big] / ref[big].abs()).max().item():11.2e}")
        keep = ref.abs() >= 0.01
        for dt in (torch.bfloat16, torch.float16):
            out, exact = got[keep].to(dt).double(), ref[keep].to(dt).double()
            off = (out != exact).double().mean().item()
            cols += [f"{100 * off:8.3f}%", f"{ulp_diff(out, exact, dt).max().item():8.1f}"]
        print(f"{form:5} " + " ".join(cols), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
