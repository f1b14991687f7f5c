"""fp32 matrix-product modes on the ViT-B/16 shapes: speed and error of each, against cuBLAS.

For every GEMM (and attention) asked for, runs the vitbench kernel once per fp32 precision mode
(_common.PRECISIONS: ieee, tf32, tf32x3, bf16x3, bf16x6; autotuned as in a forward) and torch's
fp32 paths (cuBLAS with TF32 off, then on), each on a NaN-poisoned output, and prints per row:
rel err against a float64 reference (||out - ref|| / ||ref||), median time (do_bench, L2 flushed),
TFLOP/s and the ratio to cuBLAS fp32 with TF32 off (what HF runs at fp32 "ieee"). Rows print as
they are measured (a run cut short keeps what it printed).

    python tools/fp32_probe.py --batch 32 --precision ieee bf16x6 --gemm fc1 fc2 attn
"""

from __future__ import annotations

import argparse
import sys

import vitbench  # noqa: F401,I001  (first: selects the Triton backend before triton is imported)
import torch
import torch.nn.functional as F
import triton

from vitbench.kernels import attention, matmul
from vitbench.kernels._common import PRECISIONS
from vitbench.numerics import poisoned, rel_err

T, D, H, HD = 197, 768, 12, 64
GEMMS = {"qkv": (2304, 768), "proj": (768, 768), "fc1": (3072, 768), "fc2": (768, 3072)}


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median")


def torch_modes():
    """(name, allow_tf32) for torch's rows."""
    return [("torch-fp32", False), ("torch-tf32", True)]


def gemm_rows(name: str, batch: int, precisions: list[str]):
    N, K = GEMMS[name]
    M = batch * T
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(M, K, device="cuda", generator=g)
    w = torch.randn(N, K, device="cuda", generator=g) / K ** 0.5
    b = torch.randn(N, device="cuda", generator=g) * 0.1
    ref = torch.addmm(b.double(), a.double(), w.double().t())
    flops = 2 * M * N * K
    out = poisoned((M, N), torch.float32, "cuda")
    for mode, tf32 in torch_modes():
        torch.backends.cuda.matmul.allow_tf32 = tf32
        ms = bench(lambda: torch.addmm(b, a, w.t(), out=out))
        torch.addmm(b, a, w.t(), out=out)
        yield mode, rel_err(out, ref), ms, flops
    torch.backends.cuda.matmul.allow_tf32 = False
    for p in precisions:
        out = poisoned((M, N), torch.float32, "cuda")
        matmul(a, w, b, precision=p, out=out)  # autotunes
        err = rel_err(out, ref)
        yield p, err, bench(lambda: matmul(a, w, b, precision=p, out=out)), flops


def attn_rows(batch: int, precisions: list[str]):
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(batch, H, T, HD, device="cuda", generator=g) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double().cpu(), k.double().cpu(), v.double().cpu())
    flops = 4 * batch * H * T * T * HD
    for mode, tf32 in torch_modes():
        torch.backends.cuda.matmul.allow_tf32 = tf32
        out = F.scaled_dot_product_attention(q, k, v)
        yield mode, rel_err(out, ref), bench(lambda: F.scaled_dot_product_attention(q, k, v)), flops
    torch.backends.cuda.matmul.allow_tf32 = False
    for p in precisions:
        out = poisoned((batch, H, T, HD), torch.float32, "cuda")
        attention(q, k, v, out=out, precision=p)
        err = rel_err(out, ref)
        yield p, err, bench(lambda: attention(q, k, v, out=out, precision=p)), flops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[32], help="ViT-B/16 batch sizes (197 rows each)")
    ap.add_argument("--gemm", nargs="+", default=[*GEMMS, "attn"], choices=[*GEMMS, "attn"],
                    help="which products: the four GEMMs and/or attention")
    ap.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                    help="vitbench fp32 precision modes to run")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    print(f"{'batch':>5} {'op':>5} {'mode':>11} {'rel_err':>9} {'ms':>9} {'TFLOP/s':>8} {'x cublas32':>10}")
    for batch in args.batch:
        for name in args.gemm:
            rows = attn_rows(batch, args.precision) if name == "attn" else gemm_rows(name, batch, args.precision)
            base = None
            for mode, err, ms, flops in rows:
                base = base if base is not None else ms  # the first row is torch fp32
                print(f"{batch:>5} {name:>5} {mode:>11} {err:>9.2e} {ms:>9.4f} {flops / ms / 1e9:>8.1f} "
                      f"{base / ms:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
