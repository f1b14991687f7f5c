"""Offline check of the attention kernel for sm_90 (no GPU needed): compile every config.

For each config of attention's `_CONFIGS` (those kept by its pruning for the dtype and head
dim), compiles `_attention_kernel` for GPUTarget("cuda", 90) with the bundled ptxas and prints
registers, spill bytes, shared memory, and static counts of wgmma (PTX), HGMMA/HMMA, MUFU and
FP32 instructions (SASS). A config that fails to compile is printed as FAILED.

    python tools/attention_compile.py                 # bf16, d = 64 (ViT-B/16)
    python tools/attention_compile.py --dtype fp16 --head-dim 80
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "0"  # before vitbench is imported: real (GPU) configs

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import triton  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import _sm90  # noqa: E402

# the module, not the function of the same name that vitbench.kernels exports
A = importlib.import_module("vitbench.kernels.attention")
PRECISIONS = importlib.import_module("vitbench.kernels._common").PRECISIONS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PTX_TYPE = {"bf16": "*bf16", "fp16": "*fp16", "fp32": "*fp32"}


def compile_config(cfg: triton.Config, dtype: str, head_dim: int, precision: str, tail: int) -> dict:
    fn = A._attention_kernel.fn
    consts = {"HEAD_DIM": head_dim, "BLOCK_D": max(16, triton.next_power_of_2(head_dim)),
              "DOT_PRECISION": precision, "PDL": False, **cfg.kwargs}
    consts.update({n: tail for n in ("TAIL_M", "TAIL_N") if n in fn.arg_names})
    sig = {n: "constexpr" if n in consts else PTX_TYPE[dtype] if n.endswith("_ptr")
           else "fp32" if n == "qk_scale" else "i32" for n in fn.arg_names}
    # the model's strides: the last one 1, the others multiples of 16 elements
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if n.endswith("_ptr") or (n.startswith("stride") and not n.endswith("d"))}
    return _sm90.build(fn, sig, consts, attrs, cfg.num_warps, cfg.num_stages)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=list(DTYPES), default="bf16", help="q/k/v dtype")
    p.add_argument("--head-dim", type=int, default=64, help="d, the head dim")
    p.add_argument("--precision", choices=list(PRECISIONS), default="ieee",
                   help="dot precision (fp32 inputs only)")
    p.add_argument("--no-tail", action="store_true",
                   help="ragged ends as one more full block (VITBENCH_ATTN_TAIL=0)")
    args = p.parse_args()
    fake_q = torch.empty(1, dtype=DTYPES[args.dtype])
    block_d = max(16, triton.next_power_of_2(args.head_dim))
    kept = A._prune_configs(A._CONFIGS, {"q_ptr": fake_q}, BLOCK_D=block_d, DOT_PRECISION=args.precision)
    for cfg in kept:
        kw = cfg.kwargs
        tag = f"{kw['BLOCK_M']}x{kw['BLOCK_N']} w{cfg.num_warps} s{cfg.num_stages}"
        try:
            r = compile_config(cfg, args.dtype, args.head_dim, args.precision, 0 if args.no_tail else A.TAIL)
            print(f"{tag:16} " + " ".join(f"{k}={v}" for k, v in r.items()), flush=True)
        except Exception as e:  # report and go on with the next config
            print(f"{tag:16} FAILED {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)


if __name__ == "__main__":
    main()
