"""A/B of the linear-layer GEMMs on a GPU: matmul (default kernel) vs matmul_tma vs torch.

For the four ViT-B/16 GEMMs (qkv, proj + residual, fc1 + GELU, fc2 + residual) at several batch
sizes, each provider is first checked against float32 torch on NaN-poisoned outputs (the script
stops with exit 1 on rel err > 1e-2), then timed with `triton.testing.do_bench` (median, L2
flushed; outputs allocated inside the timed call by every provider). Providers are interleaved
over --rounds rounds and the median of the per-round medians is reported.

    python tools/gemm_ab.py                        # bf16, batch 8 32 256
    python tools/gemm_ab.py --batch 256 --dtype fp16 --rounds 5

Providers: default = vitbench matmul's pointer kernel (VITBENCH_MATMUL is ignored here),
tma = vitbench matmul_tma, cublas = F.linear (GEMM + bias only), unfused = F.linear then the
epilogue in torch (GELU / + residual), i.e. what the fused kernels replace.
Targets (issue #6): tma >= 0.95x cublas per GEMM; fused kernels >= 1.2x unfused.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys

import vitbench  # noqa: F401,I001  (first: selects the Triton backend before triton is imported)
import torch
import torch.nn.functional as F
import triton

from vitbench.numerics import poisoned, rel_err

matmul_mod = importlib.import_module("vitbench.kernels.matmul")
tma_mod = importlib.import_module("vitbench.kernels.matmul_tma")

# name, N, K, epilogue (D = 768, MLP = 3072)
GEMMS = [("qkv", 2304, 768, "none"), ("proj", 768, 768, "residual"),
         ("fc1", 3072, 768, "gelu"), ("fc2", 768, 3072, "residual")]
MAX_REL_ERR = 1e-2
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def unfused(a, w, b, epilogue, res):
    y = F.linear(a, w, b)
    if "gelu" in epilogue:
        y = F.gelu(y)
    if "residual" in epilogue:
        y = y + res
    return y


def providers(a, w, b, epilogue, res):
    """name -> zero-argument call (allocating its output), and -> call writing into `out`."""
    kw = dict(epilogue=epilogue, residual=res)
    timed = {
        "default": lambda: matmul_mod.matmul(a, w, b, **kw),
        "tma": lambda: tma_mod.matmul_tma(a, w, b, **kw),
        "cublas": lambda: F.linear(a, w, b),
        "unfused": lambda: unfused(a, w, b, epilogue, res),
    }
    checked = {
        "default": lambda out: matmul_mod.matmul(a, w, b, **kw, out=out),
        "tma": lambda out: tma_mod.matmul_tma(a, w, b, **kw, out=out),
        "unfused": lambda out: out.copy_(unfused(a, w, b, epilogue, res)),
    }
    return timed, checked


def check(name: str, checked: dict, ref: torch.Tensor, a, w, b, epilogue, res) -> None:
    for prov, fn in checked.items():
        out = poisoned(ref.shape, a.dtype, a.device)
        fn(out)
        err = rel_err(out, ref)
        if not err <= MAX_REL_ERR:
            sys.exit(f"WRONG RESULT: {name} provider={prov} rel_err={err:.3e} > {MAX_REL_ERR} "
                     f"(M={a.shape[0]}, N={w.shape[0]}, K={a.shape[1]}, {a.dtype})")
    # cublas (no epilogue) against the plain GEMM + bias
    ref_lin = F.linear(a.float(), w.float(), b.float())
    err = rel_err(F.linear(a, w, b), ref_lin)
    if not err <= MAX_REL_ERR:
        sys.exit(f"WRONG RESULT: {name} provider=cublas rel_err={err:.3e}")


def best(tuner) -> str:
    cfg = getattr(tuner, "best_config", None)
    if cfg is None:
        return "-"
    k = cfg.kwargs
    extra = "".join(f" {n.lower()}" for n in ("EPI_SUBTILE", "WARP_SPEC") if k.get(n))
    return f"{k['BLOCK_M']}x{k['BLOCK_N']}x{k['BLOCK_K']} s{cfg.num_stages} w{cfg.num_warps}{extra}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32, 256], help="images per batch (M = 197 * batch)")
    p.add_argument("--dtype", choices=list(DTYPES), default="bf16", help="storage dtype")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per case")
    p.add_argument("--rep", type=int, default=200, help="do_bench rep (milliseconds per measurement)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gemm_ab.py needs a CUDA GPU")
    matmul_mod.MODE = "pointer"  # "default" must be the pointer kernel whatever VITBENCH_MATMUL says
    dt, dev = DTYPES[args.dtype], torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}  {args.dtype}  torch {torch.__version__}  triton {triton.__version__}")
    head = (f"{'batch':>5} {'gemm':5} {'epilogue':9} | {'default':>8} {'tma':>8} {'cublas':>8} {'unfused':>8} ms"
            f" | {'tma TF/s':>8} {'cuBLAS TF/s':>11} | {'tma/cublas':>10} {'tma/def':>7} {'unf/tma':>7}"
            f" | default cfg / tma cfg")
    print(head)
    print("-" * len(head))
    torch.manual_seed(0)
    for batch in args.batch:
        M = 197 * batch
        for name, N, K, epilogue in GEMMS:
            a = torch.randn(M, K, device=dev, dtype=dt)
            w = torch.randn(N, K, device=dev, dtype=dt) / K ** 0.5
            b = torch.randn(N, device=dev, dtype=dt)
            res = torch.randn(M, N, device=dev, dtype=dt) if "residual" in epilogue else None
            if not tma_mod.tma_eligible(a, w, b, epilogue=epilogue, residual=res):
                sys.exit(f"{name}: not eligible for matmul_tma (capability {torch.cuda.get_device_capability()})")
            ref = unfused(a.float(), w.float(), b.float(), epilogue, None if res is None else res.float())
            timed, checked = providers(a, w, b, epilogue, res)
            check(name, checked, ref, a, w, b, epilogue, res)  # also autotunes both kernels (warm-up)
            times: dict[str, list[float]] = {k: [] for k in timed}
            for _ in range(args.rounds):
                for prov, fn in timed.items():
                    times[prov].append(triton.testing.do_bench(fn, warmup=25, rep=args.rep, return_mode="median"))
            ms = {k: statistics.median(v) for k, v in times.items()}
            flops = 2 * M * N * K
            print(f"{batch:5d} {name:5} {epilogue:9} | {ms['default']:8.4f} {ms['tma']:8.4f} {ms['cublas']:8.4f}"
                  f" {ms['unfused']:8.4f}    | {flops / ms['tma'] / 1e9:8.1f} {flops / ms['cublas'] / 1e9:11.1f}"
                  f" | {ms['cublas'] / ms['tma']:10.3f} {ms['default'] / ms['tma']:7.3f} {ms['unfused'] / ms['tma']:7.3f}"
                  f" | {best(getattr(matmul_mod, '_matmul', None))} / {best(tma_mod._matmul_tma)}", flush=True)
    print("ratios > 1: tma faster. Targets: tma/cublas >= 0.95; unf/tma >= 1.2 for proj, fc1, fc2.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
