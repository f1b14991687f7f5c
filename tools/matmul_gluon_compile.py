"""Offline sm_90 build of every kernels/matmul_gluon.py config (no GPU needed).

For each config: bias and bias + residual epilogues in bf16 and fp16, and no bias (with and without
the residual) in bf16: registers (maxnreg; the consumers run with more after setmaxnreg), spills,
shared memory, wgmma/TMA counts. A config that fails to compile, spills or exceeds shared memory
is reported (exit status 1).

    python tools/matmul_gluon_compile.py
"""

from __future__ import annotations

import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from tools._sm90 import build  # noqa: E402
from triton.experimental.gluon._runtime import GluonASTSource  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402

from vitbench.kernels import matmul_gluon as mg  # noqa: E402


def _desc(shape, dt) -> str:
    lay = gl.NVMMASharedLayout.get_default_for(list(shape), dt)
    name = "bf16" if dt == gl.bfloat16 else "fp16"
    return f"tensordesc<{name}[{shape[0]}, {shape[1]}],{lay!r}>"


EPILOGUES = (  # (bias, residual, dtype): constexpr-dead code differs with the bias, not the dtype
    (True, False, gl.bfloat16), (True, False, gl.float16), (True, True, gl.bfloat16), (True, True, gl.float16),
    (False, False, gl.bfloat16), (False, True, gl.bfloat16),
)


def main() -> int:
    bad = 0
    print(f"{'config':<22} {'epilogue':<9} {'dtype':<5} regs spill  smem   wgmma tma_ld tma_st")
    for bm, bn, bk, stages, warps, consumers in mg.CONFIGS:
        label = f"{bm}x{bn}x{bk} s{stages} w{warps}{mg._SUFFIX[consumers].replace('-', ' ')}"
        for bias, res, dt in EPILOGUES:
            name = "bf16" if dt == gl.bfloat16 else "fp16"
            epi = ("bias+" * bias + "res") if res else ("bias" if bias else "none")
            sig = {"a_desc": _desc((bm, bk), dt), "w_desc": _desc((bn, bk), dt),
                   "o_desc": _desc((bm, bn), dt), "r_desc": _desc((bm, bn), dt),
                   "bias_ptr": "*" + name, "M": "i32", "N": "i32", "K": "i32", "res_step": "i32",
                   "HAS_BIAS": "constexpr", "HAS_RES": "constexpr", "GROUP": "constexpr",
                   "STAGES": "constexpr", "CONSUMERS": "constexpr", "CONSUMER_REGS": "constexpr",
                   "LOADER_REGS": "constexpr", "num_warps": "constexpr"}
            meta = mg.register_meta(warps, consumers)
            maxnreg = meta.pop("maxnreg")
            consts = {"HAS_BIAS": bias, "HAS_RES": res, "GROUP": mg.GROUP_M, "STAGES": stages, **meta,
                      "num_warps": warps}
            try:
                r = build(mg._gemm_ws_kernel, sig, consts, {}, warps, stages, source=GluonASTSource,
                          maxnreg=maxnreg)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{label:<22} {epi:<9} {name:<5} FAILED: {type(exc).__name__}: {str(exc)[-600:]}")
                bad += 1
                continue
            over = r["smem"] > mg._SMEM_BYTES or r["spill_st"] > 0
            bad += over
            print(f"{label:<22} {epi:<9} {name:<5} {r['regs']:>4} {r['spill_st']:>5} {r['smem']:>6} "
                  f"{r['wgmma']:>5} {r['tma_load']:>6} {r['tma_store']:>6}{'  <-- over' if over else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    torch.manual_seed(0)
    raise SystemExit(main())
