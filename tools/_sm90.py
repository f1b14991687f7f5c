"""Offline sm_90 build of one Triton kernel (no GPU needed): PTX/SASS counts, registers, spills.

Shared by tools/matmul_tma_compile.py and tools/attention_compile.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


def _ptxas() -> str:
    """The ptxas triton itself runs for sm_90 (triton 3.9 picks its bundled ptxas-blackwell, whose
    PTX version matches what it emits; 3.6 its ptxas), else the bundled ptxas."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(90).path
    except Exception:  # noqa: BLE001 - an older or newer triton: the bundled binary
        return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")


PTXAS = _ptxas()
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
# SASS opcode classes counted (static instruction counts, whole kernel): the epilogue's math
# runs on the FP32 pipe (FFMA/FMUL/FADD/FMNMX/FSEL...) and the MUFU (ex2, rcp).
SASS_CLASSES = {"fp32": re.compile(r"^F(FMA|MUL|ADD|MNMX|SEL|SETP|CHK)"), "mufu": re.compile(r"^MUFU"),
                "wgmma": re.compile(r"^HGMMA"), "mma": re.compile(r"^HMMA")}


def build(fn, sig: dict, consts: dict, attrs: dict, num_warps: int, num_stages: int,
          source=ASTSource, maxnreg: int | None = None) -> dict:
    """Compile `fn` for GPUTarget("cuda", 90), assemble with the bundled ptxas, count.
    `source`: the AST source class (a Gluon kernel's is GluonASTSource)."""
    k = triton.compile(source(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                       target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": num_warps, "num_stages": num_stages,
                                **({"maxnreg": maxnreg} if maxnreg else {})})
    ptx = k.asm["ptx"]
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        info = subprocess.run([PTXAS, "-arch=sm_90a", "-v", src, "-o", os.path.join(d, "k.cubin")],
                              capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([CUOBJDUMP, "-sass", os.path.join(d, "k.cubin")],
                              capture_output=True, text=True, check=True).stdout
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    tma_store = ptx.count("cp.async.bulk.tensor.2d.global.shared")
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass)
    counts = {k: sum(1 for o in ops if rx.match(o)) for k, rx in SASS_CLASSES.items()}
    return {
        "sass": len(ops), **{f"sass_{k}": v for k, v in counts.items()},
        "wgmma": ptx.count("wgmma.mma_async"),
        "tma_load": ptx.count("cp.async.bulk.tensor") - tma_store,
        "tma_store": tma_store,
        "regs": int(regs.group(1)) if regs else -1,
        "spill_st": int(spill.group(1)) if spill else -1,
        "spill_ld": int(spill.group(2)) if spill else -1,
        "smem": k.metadata.shared,
        "warp_specialized": "setmaxnreg" in ptx,
    }
