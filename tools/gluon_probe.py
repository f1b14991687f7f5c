"""GPU probe of kernels/matmul_gluon.py: every config checked, then timed against cuBLAS, the
unfused torch sequence and vitbench's current GEMM choice (GPU only, compute capability 9.x).

Correctness first: each config x epilogue x dtype runs on fresh random inputs of irregular sizes
into an output filled with NaN, against a float64 reference (rel. max error <= 2e-2 bf16 /
4e-3 fp16, scaled by the reference's max). A wrong config is reported and never timed.
Then the ViT-B/16 GEMMs at the given batches: triton.testing.do_bench medians (L2 flushed before
each launch), ROUNDS interleaved rounds, in ms.

    python tools/gluon_probe.py [--batch 256 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from vitbench.kernels import _dispatch  # noqa: E402
from vitbench.kernels.matmul import matmul as vb_matmul  # noqa: E402
from vitbench.kernels import matmul_gluon as mg  # noqa: E402

TOL = {torch.bfloat16: 2e-2, torch.float16: 4e-3}
# ViT-B/16 GEMMs: name -> (N, K, epilogue the gluon kernel runs)
GEMMS = {"fc2": (768, 3072, "residual"), "proj": (768, 768, "residual"), "qkv": (2304, 768, "none")}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def check(dtype: torch.dtype) -> int:
    bad = 0
    for M, N, K in ((1000, 200, 136), (257, 776, 3072), (4133, 2304, 768)):
        a = torch.randn(M, K, device="cuda", dtype=dtype)
        w = torch.randn(N, K, device="cuda", dtype=dtype) / K ** 0.5
        b = torch.randn(N, device="cuda", dtype=dtype)
        r = torch.randn(M, N, device="cuda", dtype=dtype)
        for epi in ("none", "bias", "residual"):
            res = r if epi == "residual" else None
            bias = None if epi == "none" else b
            ref = a.double() @ w.double().T
            if bias is not None:
                ref = ref + b.double()
            if res is not None:
                ref = ref + r.double()
            for cfg in mg.CONFIGS:
                out = torch.full((M, N), float("nan"), device="cuda", dtype=dtype)
                try:
                    mg.matmul_gluon(a, w, bias, epilogue="residual" if res is not None else "none",
                                    residual=res, out=out, config=cfg)
                    torch.cuda.synchronize()
                    err = rel_err(out, ref)
                except Exception as exc:  # noqa: BLE001 - reported
                    print(f"  check {M}x{N}x{K} {epi:8} {cfg} FAILED {type(exc).__name__}: {str(exc)[:300]}")
                    bad += 1
                    continue
                ok = err <= TOL[dtype]
                bad += not ok
                if not ok:
                    print(f"  check {M}x{N}x{K} {epi:8} {cfg} WRONG rel_err={err:.2e}")
    print(f"check {dtype}: {'all ok' if not bad else f'{bad} failed'}", flush=True)
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[256, 32], help="ViT-B/16 batch sizes")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--rep", type=int, default=100, help="do_bench rep (ms per measurement)")
    p.add_argument("--graph-below", type=int, default=20000,
                   help="GEMMs with fewer rows are timed as CUDA-graph replays (do_bench_cudagraph, L2 "
                        "not flushed): eager launches of small GEMMs time the host, not the GPU")
    args = p.parse_args()
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}", flush=True)
    bad = check(torch.float16) + check(torch.bfloat16)
    dtype = torch.bfloat16
    for batch in args.batch:
        M = batch * 197
        if M < args.graph_below:
            def bench(fn):
                torch.cuda.synchronize()
                return triton.testing.do_bench_cudagraph(fn, rep=args.rep, return_mode="median")
        else:
            def bench(fn):
                return triton.testing.do_bench(fn, rep=args.rep, return_mode="median")
        for name, (N, K, epi) in GEMMS.items():
            a = torch.randn(M, K, device="cuda", dtype=dtype)
            w = torch.randn(N, K, device="cuda", dtype=dtype) / K ** 0.5
            b = torch.randn(N, device="cuda", dtype=dtype)
            r = torch.randn(M, N, device="cuda", dtype=dtype) if epi == "residual" else None
            out = torch.empty(M, N, device="cuda", dtype=dtype)
            ref = F.linear(a.double(), w.double(), b.double()) + (0 if r is None else r.double())
            fns = {"cuBLAS F.linear": lambda: F.linear(a, w, b)}
            if r is not None:
                fns["torch unfused"] = lambda: torch.add(F.linear(a, w, b), r)
            fns["vitbench matmul"] = lambda: vb_matmul(a, w, b, epilogue=epi, residual=r, out=out)
            for cfg in mg.CONFIGS:
                fns[f"gluon {cfg}"] = (lambda cfg=cfg: mg.matmul_gluon(a, w, b, epilogue=epi, residual=r,
                                                                       out=out, config=cfg))
            if r is not None:  # what the residual costs each kernel: the same GEMM without it
                fns["vitbench no-res"] = lambda: vb_matmul(a, w, b, out=out)
                for cfg in mg.CONFIGS:
                    fns[f"gluon no-res {cfg}"] = (lambda cfg=cfg: mg.matmul_gluon(a, w, b, out=out, config=cfg))
            ok = {}
            for k, fn in fns.items():  # checked before timed (also warms up / autotunes)
                out.fill_(float("nan"))
                y = fn()
                y = out if y is None else y
                torch.cuda.synchronize()
                want = ref if "no-res" not in k else F.linear(a.double(), w.double(), b.double())
                ok[k] = rel_err(y, want) <= TOL[dtype] if not k.startswith(("cuBLAS",)) else True
            times = {k: [] for k in fns if ok[k]}
            for _ in range(args.rounds):
                for k in times:
                    times[k].append(bench(fns[k]))
            print(f"== batch {batch} {name}+{epi} M={M} N={N} K={K} bf16 (ms per round)", flush=True)
            base = min(times["cuBLAS F.linear"])
            unf = min(times.get("torch unfused", times["cuBLAS F.linear"]))
            for k in fns:
                if not ok[k]:
                    print(f"  {k:28} WRONG")
                    bad += 1
                    continue
                t = min(times[k])
                print(f"  {k:28} {' '.join(f'{x:.4f}' for x in times[k])}  best {t:.4f}  "
                      f"{base / t:5.3f}x cuBLAS  {unf / t:5.3f}x unfused", flush=True)
            picks = [v for key, v in _dispatch.choices().items() if key[0] == "matmul" and key[3] == N
                     and key[1][0] <= M]
            print(f"  (vitbench's kernel picks for N={N}: {picks})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
