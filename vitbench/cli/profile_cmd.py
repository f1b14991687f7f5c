"""`vitbench profile`: a per-kernel time table of one Triton ViT forward (parses, delegates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def _table(result) -> Table:
    where = "CUDA kernel time" if result.representative else "CPU time, Triton interpreter — NOT representative"
    table = Table(title=f"{result.model}  batch {result.batch}  {result.dtype}  {result.device}",
                  caption=f"{where}; CUDA graphs {'on' if result.graphs else 'off'}")
    table.add_column("kernel", overflow="fold", min_width=19)
    for col, justify in ( ("calls", "right"), ("total µs", "right"),
                         ("%", "right"), ("mean µs", "right"), ("TFLOP/s", "right"), ("GB/s", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    rows = [*result.rows, result.total]
    for i, r in enumerate(rows):
        table.add_row(r.kernel, str(r.calls), _us(r.total_us), f"{r.pct:.1f}", _us(r.mean_us),
                      _num(r.tflops, ".3g"), _num(r.gbps, ".4g"), end_section=i == len(rows) - 2)
    return table


def profile(
    model_name: Annotated[Optional[str], typer.Option(
        "--model", help="Named config, e.g. vit-base-patch16-224 (default on a GPU) or "
                        "vit-tiny-test (default without one); see `vitbench model --help`.",
    )] = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size (images per forward), >= 1.")] = 1,
    dtype: Annotated[Optional[str], typer.Option(
        "--dtype", help="fp32, fp16 or bf16 (default bf16 on a GPU, fp32 without one).",
    )] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32 only: ieee (exact matmuls, default), tf32, bf16x6, tf32x3 or bf16x3.",
    )] = "ieee",
    weights: Annotated[str, typer.Option(
        "--weights", help="'random' (seeded HF init; default), a save_pretrained directory or a hub id.",
    )] = "random",
    graphs: Annotated[bool, typer.Option(
        "--graphs/--no-graphs", help="Profile a CUDA-graph replay. OFF by default: kernels inside a "
                                     "graph replay may be invisible to the profiler, so the table "
                                     "would miss them; GPU only.",
    )] = False,
    cls_only: Annotated[bool, typer.Option(
        "--cls-only/--no-cls-only", help="Profile the forward `vitbench model` times: logits only, "
                                         "the last layer past attention on the CLS row (default). "
                                         "--no-cls-only: every output of every layer.",
    )] = True,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Chrome trace file to write (default: <out>/profile-<model>-b<batch>-"
                        "<dtype>.trace.json); open it in chrome://tracing or ui.perfetto.dev.",
    )] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for the CSV table and the default trace (default: results/<device>).",
    )] = None,
) -> None:
    """Per-kernel time table of ONE forward of the Triton ViT, from torch.profiler.

    Warm-up (Triton JIT, autotuning) runs outside the profiled region; CUDA graphs are OFF by default.

    Rows: kernel, calls, total and % of kernel time, mean per call, achieved TFLOP/s and GB/s (vitbench kernels: FLOPs/bytes from each kernel file's cost function, summed over the forward's launches).

    Without a GPU the rows are CPU time under the Triton interpreter: calls and FLOPs are right, times are NOT representative.

    Writes <out>/profile-<model>-b<batch>-<dtype>.csv and a Chrome trace (.trace.json).
    """
    from vitbench.bench.profile import profile_model

    err = Console(stderr=True)
    result = profile_model(model=model_name, batch=batch, dtype=dtype, weights=weights,
                           precision=precision, graphs=graphs, trace=trace, out_dir=out,
                           cls_only=cls_only)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    Console().print(_table(result))
    err.print(f"table: {result.csv}\ntrace: {result.trace}", highlight=False)
