"""The comparison in the terminal: a rich table per row, geomeans per op/model, a verdict."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vitbench.report.compare import Comparison


def change_text(ratio: float, significant: object) -> str:
    """'+6.1% slower' / '-3.0% faster' / '±0.2% (n.s.)', in rich markup."""
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return ""
    pct = (ratio - 1) * 100
    word = "slower" if pct > 0 else "faster"
    if significant is True:
        color = "red" if pct > 0 else "green"
        return f"[{color}]{pct:+.1f}% {word}[/]"
    if significant is False:
        return f"[dim]{pct:+.1f}% (n.s.)[/]"
    return f"{pct:+.1f}% (no CI)"


def _ci(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) else f"{lo:.3f}–{hi:.3f}"


def _ms(v: float) -> str:
    return "" if pd.isna(v) else f"{v:.4g}"


def print_comparison(cmp: Comparison, console: Console, threshold: float | None = None) -> None:
    base = ", ".join(r.label for r in cmp.base_runs)
    new = ", ".join(r.label for r in cmp.new_runs)
    console.print(f"BASE: {escape(base)}\nNEW:  {escape(new)}", highlight=False)
    for w in cmp.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    width = console.width
    multi_suite = cmp.rows["suite"].nunique() > 1
    table = Table(title="NEW / BASE latency (median), 95% bootstrap CI", title_justify="left")
    if width < 120:  # narrow terminal: one identity column, ratio with its CI
        table.add_column("op · case · provider · dtype", overflow="fold")
        table.add_column("ratio [95% CI]", justify="right", no_wrap=True)
    else:
        for col in ("op", "case", "provider", "dtype") + (("shape", "timer") if width >= 150
                                                          else ()):
            table.add_column(col, overflow="fold")
        for col in ("BASE ms", "NEW ms", "ratio", "95% CI"):
            table.add_column(col, justify="right", no_wrap=True)
    table.add_column("change", no_wrap=True)
    for _, r in cmp.rows.iterrows():
        op = f"{r['suite']}/{r['op']}" if multi_suite else r["op"]
        dtype = r["dtype"] + (f" {r['precision']}" if r["precision"] else "")
        status = change_text(r["ratio"], r["significant"]) if r["status"] in ("ok", "no samples") \
            else f"[bold red]{r['status']}[/]"
        ratio = "" if math.isnan(r["ratio"]) else f"{r['ratio']:.3f}"
        if width < 120:
            ci = f" [{_ci(r['ci_lo'], r['ci_hi'])}]" if ratio and not math.isnan(r["ci_lo"]) else ""
            table.add_row(escape(f"{op} · {r['case']} · {r['provider']} · {dtype}"),
                          escape(ratio + ci), status)
            continue
        ident = (op, r["case"], r["provider"], dtype) + ((r["shape"], r["timer"]) if width >= 150
                                                         else ())
        table.add_row(*(escape(str(x)) for x in ident), _ms(r["base_ms"]), _ms(r["new_ms"]),
                      ratio, _ci(r["ci_lo"], r["ci_hi"]), status)
    console.print(table)
    if not cmp.groups.empty:
        g = Table(title="geometric mean of NEW / BASE per op/model", title_justify="left")
        for col in ("suite", "op", "rows", "geomean", "95% CI", "change"):
            g.add_column(col, justify="right" if col in ("rows", "geomean", "95% CI") else "left")
        for _, r in cmp.groups.iterrows():
            g.add_row(escape(str(r["suite"])), escape(str(r["op"])), str(r["rows"]),
                      f"{r['geomean']:.3f}", _ci(r["ci_lo"], r["ci_hi"]),
                      change_text(r["geomean"], r["significant"]))
        if cmp.overall:
            o = cmp.overall
            g.add_row("[b]all[/]", "", str(o["rows"]), f"[b]{o['geomean']:.3f}[/]",
                      _ci(o["ci_lo"], o["ci_hi"]), change_text(o["geomean"], o["significant"]))
        console.print(g)
    console.print(cmp.match_summary(), highlight=False)
    fails = cmp.new_failures()
    if len(fails):
        console.print(f"[bold red]{len(fails)} row(s) pass in BASE but fail in NEW[/]")
    if threshold is not None:
        reg = cmp.regressions(threshold)
        if len(reg) or len(fails):
            console.print(f"[bold red]FAIL:[/] {len(reg)} significant slowdown(s) above "
                          f"{threshold:.1%}, {len(fails)} new failure(s)")
        else:
            console.print(f"[green]OK:[/] no significant slowdown above {threshold:.1%}")
