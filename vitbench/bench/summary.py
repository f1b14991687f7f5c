"""The table printed at the end of a run: one line per case, one cell per provider."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from vitbench.bench.stats import geomean


def _err(x: Any) -> str:
    return "-" if x is None else f"{float(x):.1e}"


def _cell(r: dict[str, Any]) -> str:
    if r.get("median_ms") is None:
        return f"[red]{(r.get('error') or 'no timing')[:40]}[/]"
    ms = r["median_ms"]
    parts = [f"{ms * 1e3:.1f} µs" if ms < 1 else f"{ms:.3f} ms"]
    tfl, gbs = r.get("tflops") or 0.0, r.get("gbps") or 0.0
    # Show the rate that matters for the op: TFLOP/s when it does real math per byte.
    if r.get("flops") and r.get("bytes") and r["flops"] / r["bytes"] > 4:
        parts.append(f"{tfl:.1f} TFLOP/s")
    elif gbs:
        parts.append(f"{gbs:.0f} GB/s")
    if r.get("pct_of_peak") is not None:
        parts.append(f"{r['pct_of_peak']:.0f}%pk")
    if r.get("speedup_vs_baseline") is not None:
        parts.append(f"x{r['speedup_vs_baseline']:.2f}")
    mark = "[green]ok[/]" if r.get("ok") else f"[red]FAIL err={_err(r.get('max_rel_err'))}[/]"
    return " ".join(parts) + " " + mark


def print_summary(rows: list[dict[str, Any]], console: Console, baseline: str | None) -> None:
    """Per case: median, TFLOP/s or GB/s, % of peak, speedup vs baseline, correctness."""
    if not rows:
        console.print("no rows measured")
        return
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    cases: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        key = (r["op"], r["case"], r["dtype"], r["precision"], r["shape"])
        cases.setdefault(key, {})[r["provider"]] = r
    table = Table(title=f"{rows[0]['suite']} — timer {rows[0]['timer']}, "
                        f"speedup vs {baseline or '(no baseline)'}", show_lines=False)
    for col in ("op", "case", "dtype", "shape"):
        table.add_column(col, overflow="fold")
    for p in providers:
        table.add_column(p, overflow="fold")
    for (op, case, dtype, prec, shape), by_p in cases.items():
        dt = f"{dtype}/{prec}" if prec and prec != "ieee" else dtype
        cells = [_cell(by_p[p]) if p in by_p else "" for p in providers]
        table.add_row(op, case, dt, shape, *cells)
    console.print(table)
    # Geometric mean of speedups per (op, provider): the right average of ratios.
    lines = []
    for op in dict.fromkeys(r["op"] for r in rows):
        for p in providers:
            sp = [r["speedup_vs_baseline"] for r in rows
                  if r["op"] == op and r["provider"] == p and r["speedup_vs_baseline"]]
            if sp and p != baseline:
                lines.append(f"{op} {p}: geomean speedup x{geomean(sp):.2f} over {len(sp)} cases")
    bad = [r for r in rows if not r.get("ok")]
    for line in lines:
        console.print(line)
    if bad:
        console.print(f"[red]{len(bad)} row(s) not ok (failed the gate or errored)[/]")
