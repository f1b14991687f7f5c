"""`vitbench kernels`: sweep each Triton op against PyTorch (parses options, delegates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console


def kernels(
    op: Annotated[Optional[str], typer.Option(
        "--op", help="Sweep to run: an op (add, layernorm, softmax, matmul, bmm, patch_embed, "
                     "attention), 'vit' (exact ViT-B/16 and ViT-L/16 shapes), a comma list, or "
                     "'all'. Reads configs/kernels/<name>.yaml. With --config: keep only this op.",
    )] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="A sweep YAML file to run instead of the shipped configs/kernels ones.",
    )] = None,
    dtype: Annotated[Optional[str], typer.Option(
        "--dtype", help="Data type(s), comma separated: fp32, fp16, bf16 (default: the config's; "
                        "fp32 in the Triton interpreter).",
    )] = None,
    providers: Annotated[Optional[str], typer.Option(
        "--providers", help="Comma list from triton, torch, torch-compile (default: the config's; "
                            "torch-compile is left out in the interpreter unless named here).",
    )] = None,
    timer: Annotated[Optional[str], typer.Option(
        "--timer", help="cold (L2 flushed, CUDA events), warm (no flush), graph (CUDA graph "
                        "replay) or host (wall clock + sync; the only one without a GPU).",
    )] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Output folder for the CSV, metadata and raw samples "
                      "(default: results/<device>, e.g. results/h100 or results/interpreter).",
    )] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Run only each config's few `quick` shapes (a smoke run).",
    )] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Append to the newest kernels-*.csv in the output folder, skipping "
                         "rows already measured.",
    )] = False,
    no_progress: Annotated[bool, typer.Option(
        "--no-progress", help="Hide the progress bar (for logs).",
    )] = False,
) -> None:
    """Time every Triton kernel against PyTorch eager and torch.compile over a shape sweep.

    Each provider is checked against a float64 reference before timing; rows go to
    <out>/kernels-<run_id>.csv, one per (case, provider).
    """
    from vitbench.suites.kernels import plan_kernels, run_kernels

    console = Console(stderr=True)
    plan = plan_kernels(op, config=config, dtype=dtype, providers=providers, timer=timer,
                        quick=quick)
    try:
        run_kernels(plan, out_dir=out, resume=resume, progress=not no_progress, console=console)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
