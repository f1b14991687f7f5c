"""Offline check of matmul_tma's kernel for sm_90 (no GPU needed): compile every Hopper config.

For each config of `TMA_CONFIGS` and each epilogue asked for, compiles the kernel for
GPUTarget("cuda", 90) with the bundled ptxas, and prints: wgmma and TMA instruction counts in
the PTX, registers and spill bytes (ptxas -v), shared memory, and whether the loop was
warp-specialised (setmaxnreg present). A config that fails to compile is printed as FAILED.

    python tools/matmul_tma_compile.py                       # bf16, epilogues none + gelu_residual
    python tools/matmul_tma_compile.py --epilogue gelu residual --dtype fp16
    python tools/matmul_tma_compile.py --dtype fp32          # TF32_CONFIGS, precision "tf32"
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "0"  # before vitbench is imported: real (GPU) configs

import argparse  # noqa: E402
import sys  # noqa: E402

import triton  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import _sm90  # noqa: E402

import vitbench  # noqa: E402,F401
from vitbench.kernels import _gelu as G  # noqa: E402
from vitbench.kernels import matmul_tma as T  # noqa: E402

ALIGNED = ("K", "N", "stride_am", "stride_wn", "stride_rm", "stride_om")  # multiples of 8 (16 B)


def compile_config(cfg: triton.Config, dtype: str, epilogue: str, bias: bool = True,
                   num_sms: int = 132, ln_fold: bool = False, row_stats: bool = False) -> dict:
    fn = T._matmul_tma_kernel
    forms = {"gelu_erf": G.FORMS["erf"], "gelu_fit": G.FORMS["fit"]}  # else the default, gelu_hw
    consts = {"HAS_BIAS": bias, "EPILOGUE": "gelu" if epilogue in forms else epilogue,
              "GELU_FORM": forms.get(epilogue, G.FORMS["hw"]), "NUM_SMS": num_sms, "PDL": False,
              "LN_FOLD": ln_fold, "LN_CP2": 32 if ln_fold else 1, "ROW_STATS": row_stats,
              "PRECISION": "tf32" if dtype == "*fp32" else "ieee", **cfg.kwargs}
    f32 = ("ln_ptr", "colsum_ptr", "stats_ptr", "ws_ptr")
    sig = {n: "constexpr" if n in consts else "*i32" if n == "cnt_ptr"
           else ("*fp32" if n in f32 else dtype) if n.endswith("_ptr")
           else "fp32" if n == "ln_eps" else "i32" for n in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if n.endswith("_ptr") or n in ALIGNED}
    return _sm90.build(fn, sig, consts, attrs, cfg.num_warps, cfg.num_stages)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16",
                   help="operand dtype (fp32: TF32_CONFIGS with precision tf32; else TMA_CONFIGS)")
    p.add_argument("--epilogue", nargs="+", choices=[*T.EPILOGUES, "gelu_erf", "gelu_fit"],
                   default=["none", "gelu_residual"],
                   help="epilogues to compile (gelu_erf, gelu_fit: gelu with the erf or the fitted form)")
    p.add_argument("--ln-fold", action="store_true", help="with a folded layernorm (LN_FOLD)")
    p.add_argument("--row-stats", action="store_true", help="storing row stats (ROW_STATS)")
    p.add_argument("--per-sm", type=int, choices=[1, 2], default=None,
                   help="only the configs with this many programs per SM (default: all)")
    args = p.parse_args()
    itemsize = 4 if args.dtype == "fp32" else 2
    for cfg in T.TF32_CONFIGS if itemsize == 4 else T.TMA_CONFIGS:
        if args.per_sm is not None and cfg.kwargs["PER_SM"] != args.per_sm:
            continue
        kw = cfg.kwargs
        tag = (f"{kw['BLOCK_M']}x{kw['BLOCK_N']}x{kw['BLOCK_K']} s{cfg.num_stages} w{cfg.num_warps}"
               f" split={int(kw['EPI_SUBTILE'])} ws={int(kw['WARP_SPEC'])} per_sm={kw['PER_SM']}")
        if not T.ln_fold_ok(cfg, args.ln_fold, args.row_stats):
            print(f"{tag:36} skipped: pruned at run time with --ln-fold / --row-stats", flush=True)
            continue
        for epi in args.epilogue:
            try:
                r = compile_config(cfg, "*" + args.dtype, epi, ln_fold=args.ln_fold, row_stats=args.row_stats)
                fits = T.fits(cfg, itemsize, epi in T._RESIDUAL_EPILOGUES)
                print(f"{tag:36} {epi:14} " + " ".join(f"{k}={v}" for k, v in r.items())
                      + ("" if fits else "  (pruned at run time: smem)"), flush=True)
            except Exception as e:  # report and go on with the next config
                print(f"{tag:36} {epi:14} FAILED {type(e).__name__}: {str(e).splitlines()[0][:120]}",
                      flush=True)


if __name__ == "__main__":
    main()
