"""`vitbench kernels`: sweep each Triton op against PyTorch (parses options, delegates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitbench.cli._suite import NoProgress, Timer, dtype_option, out_option, resume_option, run


def kernels(
    op: Annotated[Optional[str], typer.Option(
        "--op", help="Sweep to run: an op (add, layernorm, softmax, matmul, bmm, patch_embed, "
                     "attention), 'vit' (exact ViT-B/16 and ViT-L/16 shapes), 'targets' (the "
                     "ViT-B/16 batch-256 kernels of the performance targets), a comma list, or "
                     "'all'. Reads configs/kernels/<name>.yaml. With --config: keep only this op.",
    )] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="A sweep YAML file to run instead of the shipped configs/kernels ones.",
    )] = None,
    dtype: Annotated[Optional[str], dtype_option(
        "the config's; fp32 in the Triton interpreter")] = None,
    providers: Annotated[Optional[str], typer.Option(
        "--providers", help="Comma list from triton, torch, torch-compile (default: the config's; "
                            "torch-compile is left out in the interpreter unless named here).",
    )] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="fp32 rows of ops with matrix products (matmul, bmm, patch_embed, "
                            "attention), comma separated, each its own labelled rows: ieee (exact), "
                            "tf32, bf16x6, tf32x3, bf16x3 (default: the config's, ieee).",
    )] = None,
    timer: Timer = None,
    out: Annotated[Optional[Path], out_option(
        "results/<device>, e.g. results/h100 or results/interpreter")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Run only each config's few `quick` shapes (a smoke run).",
    )] = False,
    resume: Annotated[bool, resume_option("kernels")] = False,
    no_progress: NoProgress = False,
) -> None:
    """Time every Triton kernel against PyTorch eager and torch.compile over a shape sweep.

    Each provider is checked against a float64 reference before timing; rows go to
    <out>/kernels-<run_id>.csv, one per (case, provider).
    """
    from vitbench.suites.kernels import plan_kernels

    plan = plan_kernels(op, config=config, dtype=dtype, providers=providers, timer=timer,
                        quick=quick, precision=precision)
    run(plan, out=out, resume=resume, no_progress=no_progress)
