"""The comparison as a self-contained HTML page (same page machinery as the report)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from vitbench.errors import VitbenchError
from vitbench.report.charts import NOT_REPRESENTATIVE, esc
from vitbench.report.compare import Comparison
from vitbench.report.html import run_header, run_section
from vitbench.report.page import figure_html, page, table_html

SLOW, FAST, FLAT = "#d62728", "#2ca02c", "#7f7f7f"


def _color(ratio: float, significant: object) -> str:
    return FLAT if significant is not True else (SLOW if ratio > 1 else FAST)


def _layout(fig: go.Figure, title: str, cmp: Comparison, height: int) -> go.Figure:
    if any(r.interpreter for r in cmp.base_runs + cmp.new_runs):
        title += f"<br><span style='color:#c62828'>⚠ {NOT_REPRESENTATIVE}</span>"
    fig.add_hline(y=1, line=dict(dash="dash", color="#888", width=1))
    fig.update_layout(title=dict(text=title, x=0.01), height=height, template="plotly_white",
                      showlegend=False, margin=dict(l=60, r=20, t=90, b=120))
    fig.update_yaxes(title_text="NEW / BASE latency (>1: slower)", type="log")
    return fig


def _errors(values, lo, hi) -> dict:
    v, lo, hi = (np.asarray(x, dtype=float) for x in (values, lo, hi))
    return dict(type="data", symmetric=False, array=np.nan_to_num(hi - v),
                arrayminus=np.nan_to_num(v - lo), thickness=1.5)


def geomean_figure(cmp: Comparison) -> go.Figure:
    g = cmp.groups
    labels = [f"{esc(s)}/{esc(o)}" for s, o in zip(g["suite"], g["op"])]
    fig = go.Figure(go.Scatter(
        x=labels, y=g["geomean"], mode="markers", error_y=_errors(g["geomean"], g["ci_lo"],
                                                                  g["ci_hi"]),
        marker=dict(size=12, color=[_color(r, s) for r, s in zip(g["geomean"], g["significant"])]),
        hovertemplate=[f"{lab}: geomean {r:.3f} (95% CI {lo:.3f}–{hi:.3f}) over {n} rows"
                       "<extra></extra>" for lab, r, lo, hi, n in
                       zip(labels, g["geomean"], g["ci_lo"], g["ci_hi"], g["rows"])]))
    return _layout(fig, "<b>Geometric-mean ratio per op/model</b> (red: significantly slower, "
                        "green: significantly faster, grey: not significant)", cmp, 420)


def _unique(labels: list[str]) -> list[str]:
    """Category labels must differ (plotly merges equal ones): number the repeats."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def op_figure(cmp: Comparison, suite: str, op: str) -> go.Figure:
    r = cmp.rows[(cmp.rows["suite"] == suite) & (cmp.rows["op"] == op) & cmp.rows["ratio"].notna()]
    labels = _unique([esc(f"{p} · {d}{' ' + pr if pr else ''} · {c} {sh}") for c, p, d, pr, sh in
                      zip(r["case"], r["provider"], r["dtype"], r["precision"], r["shape"])])
    lo = r["ci_lo"].fillna(r["ratio"])
    hi = r["ci_hi"].fillna(r["ratio"])
    fig = go.Figure(go.Scatter(
        x=labels, y=r["ratio"], mode="markers", error_y=_errors(r["ratio"], lo, hi),
        marker=dict(size=9, color=[_color(x, s) for x, s in zip(r["ratio"], r["significant"])]),
        hovertemplate=[f"{lab}<br>{esc(sh)}<br>BASE {b:.4g} ms → NEW {n:.4g} ms<br>"
                       f"ratio {x:.3f} (95% CI {a:.3f}–{z:.3f})<extra></extra>"
                       for lab, sh, b, n, x, a, z in
                       zip(labels, r["shape"], r["base_ms"], r["new_ms"], r["ratio"], lo, hi)]))
    fig.update_xaxes(tickangle=35, tickfont=dict(size=10))
    return _layout(fig, f"<b>{esc(op)}</b> ({esc(suite)}): NEW / BASE per row, 95% CI", cmp,
                   460 + 4 * max((len(x) for x in labels), default=0))


def _change(ratio: float, significant: object, status: str) -> str:
    if status not in ("ok", "no samples"):
        return status
    if math.isnan(ratio):
        return ""
    word = "slower" if ratio > 1 else "faster"
    tag = "" if significant is True else (" (n.s.)" if significant is False else " (no CI)")
    return f"{(ratio - 1) * 100:+.1f}% {word}{tag}"


def comparison_section(cmp: Comparison) -> str:
    parts = ["<h2 id=\"comparison\">Comparison NEW / BASE</h2>"]
    parts += [f'<div class="warn">{esc(w)}</div>' for w in cmp.warnings]
    cls = "warn" if cmp.partial else "card"
    parts.append(f'<div class="{cls}">{esc(cmp.match_summary())}. Ratio of median latencies '
                 "NEW / BASE with a 95% bootstrap confidence interval over the raw samples; "
                 "significant when the interval excludes 1.</div>")
    figs = [geomean_figure(cmp)] if not cmp.groups.empty else []
    figs += [op_figure(cmp, s, o) for s, o in zip(cmp.groups.get("suite", []),
                                                   cmp.groups.get("op", []))]
    parts += [figure_html(f, f"compare-chart-{i}") for i, f in enumerate(figs)]
    df = cmp.rows.copy()
    df["change"] = [_change(r, s, st) for r, s, st in
                    zip(df["ratio"], df["significant"], df["status"])]
    cols = [("suite", "suite"), ("op", "op / model"), ("case", "case"), ("provider", "provider"),
            ("dtype", "dtype"), ("precision", "precision"), ("shape", "shape"),
            ("timer", "timer"), ("base_ms", "BASE ms"), ("new_ms", "NEW ms"),
            ("ratio", "ratio"), ("ci_lo", "CI low"), ("ci_hi", "CI high"), ("change", "change")]

    def change_class(v: str) -> str:
        return "" if "n.s." in v or not v else ("good" if "faster" in v else "bad")

    parts += ["<h3>All matched rows</h3>",
              table_html(df, cols, "compare-rows", cell_class={"change": change_class})]
    return "".join(parts)


def write_compare_page(cmp: Comparison, out: Path, with_report: bool = False) -> Path:
    """Comparison, then both runs' headers (and, with_report, NEW's full report sections)."""
    body = comparison_section(cmp)
    for side, runs in (("BASE", cmp.base_runs), ("NEW", cmp.new_runs)):
        for run in runs:
            body += f"<h2>{side}: {esc(run.label)}</h2>{run_header(run)}"
    if with_report:
        body += "".join(run_section(run)[0] for run in cmp.new_runs)
    out = Path(out)
    if out.is_dir():
        raise VitbenchError(f"--html {out}: is a folder, give a file name such as compare.html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page("vitbench comparison", body), encoding="utf-8")
    except OSError as exc:
        raise VitbenchError(f"--html {out}: cannot write ({exc.strerror})") from None
    return out
