"""`vitbench report` and `vitbench compare`: parse options, delegate to vitbench.report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress

from vitbench.report.load import DEFAULT_RESULTS, find_runs


def report(
    results: Annotated[Optional[list[Path]], typer.Argument(
        help="Result CSVs or folders (a folder gives its latest run per suite, searched "
             "recursively, with the runs of that suite from the same commit and settings that ran "
             "at the same time, e.g. one job split over GPUs). Default: the latest runs in results/.",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"),
    title: Annotated[str, typer.Option(help="Page title.")] = "vitbench report",
) -> None:
    """Write one self-contained, offline HTML report with interactive charts of result runs."""
    from vitbench.report.html import write_report

    console = Console(stderr=True)
    runs = find_runs(results, DEFAULT_RESULTS)
    for run in runs:
        console.print(f"reading {run.csv_path} ({len(run.rows)} rows)", highlight=False)
        for w in run.warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)
    with console.status("rendering charts…"):
        s = write_report(runs, out, title)
    console.print(f"wrote [bold]{s.path}[/] ({s.size_bytes / 1e6:.1f} MB): {s.runs} run(s), "
                  f"{s.charts} charts, {s.rows} rows, {s.flagged} flagged", highlight=False)


def compare(
    base: Annotated[Path, typer.Argument(help="BASE run: a result CSV or a run folder.",
                                         show_default=False)],
    new: Annotated[Path, typer.Argument(help="NEW run: a result CSV or a run folder.",
                                        show_default=False)],
    fail_above: Annotated[Optional[str], typer.Option(
        "--fail-above", help="Exit 1 when a significant slowdown exceeds this (e.g. 5% or "
                             "0.05), or when a row that passed in BASE fails in NEW.")] = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Also write the comparison as a self-contained HTML page.")] = None,
    with_report: Annotated[bool, typer.Option(
        "--with-report", help="With --html: add NEW's full report (charts, rows) to the page.")
    ] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples per row.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (results are reproducible).")
    ] = 0,
) -> None:
    """Compare NEW with BASE: per-row latency ratio with a 95% bootstrap CI, geomean per op."""
    from vitbench.report.compare import compare_runs, parse_threshold
    from vitbench.report.compare_html import write_compare_page
    from vitbench.report.compare_view import print_comparison

    threshold = parse_threshold(fail_above) if fail_above is not None else None
    base_runs, new_runs = find_runs([base]), find_runs([new])
    console = Console()
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bootstrapping", total=None)
        cmp = compare_runs(base_runs, new_runs, resamples, seed,
                           progress=lambda i, n: bar.update(task, completed=i, total=n))
    print_comparison(cmp, console, threshold)
    if html is not None:
        write_compare_page(cmp, html, with_report)
        console.print(f"wrote [bold]{html}[/]", highlight=False)
    if threshold is not None and (len(cmp.regressions(threshold)) or len(cmp.new_failures())):
        raise typer.Exit(1)
