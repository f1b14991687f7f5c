"""What the suite commands (`kernels`, `model`) share: their common options and the run step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:  # the suites import torch: only when a command runs, not for --help
    from vitbench.suites.common import SuitePlan

NoProgress = Annotated[bool, typer.Option(
    "--no-progress", help="Hide the progress bar (for logs).",
)]
Timer = Annotated[Optional[str], typer.Option(
    "--timer", help="cold (CUDA events, L2 flushed), warm (no flush), graph (every provider "
                    "replayed from a CUDA graph) or host (wall clock + sync; the only one without "
                    "a GPU). Default: the config's on a GPU, host without one.",
)]


def dtype_option(default: str) -> typer.models.OptionInfo:
    return typer.Option("--dtype", help=f"Data type(s), comma separated: fp32, fp16, bf16 "
                                        f"(default: {default}).")


def out_option(default: str) -> typer.models.OptionInfo:
    return typer.Option("--out", help=f"Output folder for the CSV, metadata and raw samples "
                                      f"(default: {default}).")


def resume_option(suite: str) -> typer.models.OptionInfo:
    return typer.Option("--resume", help=f"Append to the newest {suite}-*.csv in the output "
                                          "folder, skipping rows already measured.")


def run(plan: "SuitePlan", *, out: Optional[Path], resume: bool, no_progress: bool) -> None:
    """Run a planned suite (notes and progress on stderr); Ctrl-C exits 130, rows kept."""
    from vitbench.suites.common import run_plan

    try:
        run_plan(plan, out_dir=out, resume=resume, progress=not no_progress,
                 console=Console(stderr=True))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
