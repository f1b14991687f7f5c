"""Plotly figures for the kernels suite, plus helpers shared with the model charts.

Every string that comes from a result file is html-escaped before it reaches plotly (plotly
renders a subset of HTML in titles, legends and hover text). Figures of an interpreter run say
"not representative" in their title.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from vitbench.report.load import Run, row_flags

KNOWN_PROVIDERS = ["triton", "torch", "torch-compile", "hf-eager", "hf-sdpa"]
PALETTE = qualitative.D3 + qualitative.Set2
MEMORY_BOUND_OPS = {"add", "layernorm", "add_layernorm", "softmax"}
COMPUTE_BOUND_OPS = {"matmul", "bmm", "attention", "patch_embed"}
NOT_REPRESENTATIVE = "Triton interpreter: timings NOT REPRESENTATIVE"
MATCH_COLS = ["case", "dtype", "precision", "shape", "timer"]


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def provider_colors(providers: Iterable[str]) -> dict[str, str]:
    """A fixed colour per provider: known providers first, others after, in sorted order."""
    others = sorted(set(providers) - set(KNOWN_PROVIDERS))
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(KNOWN_PROVIDERS + others)}


def rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def variants(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(dtype, precision) pairs present, in order of first appearance."""
    return list(dict.fromkeys(zip(df["dtype"], df["precision"])))


def variant_label(dtype: str, precision: str) -> str:
    return esc(dtype + (f" {precision}" if precision and precision != "ieee" else ""))


def series(df: pd.DataFrame, x: str) -> list[tuple[str, str, int, pd.DataFrame]]:
    """Lines to draw: (name, provider, sweep index, rows sorted by x).

    One line per provider (and timer, when an op was timed several ways) and per sweep: a case
    label shared by several rows names a sweep ("rows", "seq"); labels naming single rows (b1,
    b8 ...) are points of one line. Rows still sharing an x are split by shape."""
    multi_timer = df["timer"].nunique() > 1
    sweeps = {c: i for i, c in enumerate(dict.fromkeys(df["case"]))}
    out = []
    for (prov, timer), g in df.groupby(["provider", "timer"], sort=False):
        name = prov + (f" ({timer})" if multi_timer else "")
        by_case = g["case"].nunique() < len(g)
        parts = g.groupby("case", sort=False) if by_case else [("", g)]
        multi_case = by_case and df["case"].nunique() > 1
        for case, gc in parts:
            label = f"{name} · {case}" if multi_case else name
            sub = gc.groupby("shape", sort=False) if gc[x].duplicated().any() else [("", gc)]
            for shape, gs in sub:
                full = f"{label} · {shape}" if shape else label
                out.append((esc(full), prov, sweeps.get(case, 0) if by_case else 0,
                            gs.sort_values(x)))
    order = {p: i for i, p in enumerate(KNOWN_PROVIDERS)}
    return sorted(out, key=lambda s: (order.get(s[1], len(order)), s[1], s[2], s[0]))


DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]


def speedups(df: pd.DataFrame, baseline: str) -> pd.Series:
    """baseline median / row median for ok rows with an ok baseline row of the same case."""
    good = df[df["ok"] & (df["error"] == "") & (df["median_ms"] > 0)]
    base = good[good["provider"] == baseline]
    exact = {tuple(r[c] for c in MATCH_COLS): r["median_ms"] for _, r in base.iterrows()}
    loose: dict[tuple, list[float]] = {}
    for _, r in base.iterrows():
        loose.setdefault(tuple(r[c] for c in MATCH_COLS[:-1]), []).append(r["median_ms"])
    out = pd.Series(np.nan, index=df.index)
    for idx, r in good.iterrows():
        b = exact.get(tuple(r[c] for c in MATCH_COLS))
        if b is None:  # e.g. a CUDA-graph provider against a warm-timed baseline
            cands = loose.get(tuple(r[c] for c in MATCH_COLS[:-1]), [])
            b = cands[0] if len(cands) == 1 else None
        if b is not None:
            out[idx] = b / r["median_ms"]
    return out


def ratio_axis(values: Iterable[float]) -> dict:
    """Speedup axis: from zero, or log when values span more than 10x (1 stays visible)."""
    v = [x for x in values if x and not math.isnan(x) and x > 0]
    if v and max(v + [1.0]) / min(v + [1.0]) > 10:
        return dict(type="log", title_text="× (log)", dtick="D2")
    return dict(rangemode="tozero", title_text="×")


def no_data_note(fig: go.Figure, text: str, row: int, col: int) -> None:
    """A grey note in the middle of an empty panel (e.g. no measured peak)."""
    fig.add_annotation(text=text, showarrow=False, xref="x domain", yref="y domain", x=0.5,
                       y=0.5, font=dict(color="#888", size=13), row=row, col=col)


def axis_type(values: Iterable[float]) -> str:
    v = [x for x in values if x and not math.isnan(x) and x > 0]
    return "log" if v and max(v) / min(v) > 20 else "linear"


def hover_text(r: pd.Series, extra: str = "") -> str:
    parts = [f"<b>{esc(r['provider'])}</b> {esc(r['case'])}", esc(r["shape"]),
             f"median {r['median_ms']:.4g} ms (p10 {r['p10_ms']:.4g}, p90 {r['p90_ms']:.4g})"]
    if not pd.isna(r["max_rel_err"]):
        parts.append(f"max_rel_err {r['max_rel_err']:.2g}")
    if extra:
        parts.append(extra)
    parts += [f"<b>⚠ {esc(f)}</b>" for f in row_flags(r)]
    return "<br>".join(parts)


def flag_trace(g: pd.DataFrame, x: pd.Series, y: pd.Series, color: str, group: str
               ) -> go.Scatter:
    """Flagged points drawn over a line: a red x for a failed check, an open ring for noise."""
    xs, ys, symbols, colors = [], [], [], []
    for (_, r), xv, yv in zip(g.iterrows(), x, y):
        flags = row_flags(r)
        if not flags or pd.isna(yv):
            continue
        bad = any(f.startswith("ok=false") for f in flags)
        xs.append(xv)
        ys.append(yv)
        symbols.append("x" if bad else "circle-open")
        colors.append("#d62728" if bad else color)
    return go.Scatter(x=xs, y=ys, mode="markers", showlegend=False, legendgroup=group,
                      hoverinfo="skip", marker=dict(symbol=symbols, color=colors, size=14,
                                                    line=dict(width=2, color=colors)))


def add_line(fig: go.Figure, g: pd.DataFrame, x: pd.Series, y: pd.Series, name: str,
             color: str, text: list[str], first: bool, row: int, col: int, sweep: int = 0
             ) -> None:
    """One line (legend entry once per figure; dash style per sweep) plus its flagged points."""
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=name,
                             showlegend=first, marker=dict(size=7),
                             line=dict(color=color, dash=DASHES[sweep % len(DASHES)]),
                             text=text, hovertemplate="%{text}<extra></extra>"), row=row, col=col)
    fig.add_trace(flag_trace(g, x, y, color, name), row=row, col=col)


def x_axis(values: Iterable[float]) -> dict:
    """One x-axis style for all panels of a row: same type and range, readable log ticks."""
    v = sorted(x for x in values if x and not math.isnan(x) and x > 0)
    if not v:
        return {}
    if v[-1] / v[0] > 20:
        lo, hi = math.log10(v[0]), math.log10(v[-1])
        pad = 0.04 * (hi - lo)
        return dict(type="log", range=[lo - pad, hi + pad], tickformat="~s")
    pad = 0.04 * (v[-1] - v[0]) or 0.5
    return dict(type="linear", range=[v[0] - pad, v[-1] + pad])


def add_band(fig: go.Figure, x, lo, hi, color: str, group: str, row: int, col: int) -> None:
    """A shaded p10–p90 band (two traces: the upper edge, then the lower one filled to it)."""
    common = dict(mode="lines", line=dict(width=0), legendgroup=group, showlegend=False,
                  hoverinfo="skip")
    fig.add_trace(go.Scatter(x=x, y=hi, **common), row=row, col=col)
    fig.add_trace(go.Scatter(x=x, y=lo, fill="tonexty", fillcolor=rgba(color, 0.18), **common),
                  row=row, col=col)


def finish(fig: go.Figure, title: str, run: Run, height: int) -> go.Figure:
    """Title (with the interpreter warning where it applies), size and style."""
    if run.interpreter:
        title += f"<br><span style='color:#c62828'>⚠ {NOT_REPRESENTATIVE}</span>"
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=16)), height=height,
                      template="plotly_white", margin=dict(l=60, r=20, t=110, b=50),
                      legend=dict(y=1, yanchor="top", font=dict(size=12), groupclick="togglegroup"),
                      hoverlabel=dict(align="left"))
    fig.update_annotations(font_size=12)
    return fig


def throughput_unit(df: pd.DataFrame) -> str:
    """TFLOP/s for compute-bound ops, GB/s for memory-bound ones (by name, else intensity)."""
    op = str(df["op"].iloc[0])
    if op in MEMORY_BOUND_OPS:
        return "GB/s"
    if op in COMPUTE_BOUND_OPS:
        return "TFLOP/s"
    intensity = (df["flops"] / df["bytes"]).median()
    return "TFLOP/s" if not pd.isna(intensity) and intensity > 20 else "GB/s"


def throughput(df: pd.DataFrame, unit: str) -> pd.Series:
    col, work, scale = ("tflops", "flops", 1e9) if unit == "TFLOP/s" else ("gbps", "bytes", 1e6)
    return df[col].fillna(df[work] / df["median_ms"] / scale)


def kernel_baseline(run: Run) -> str:
    named = [b for b in run.rows["baseline"] if b]
    return max(set(named), key=named.count) if named else "torch"


def kernel_figure(run: Run, op: str, df: pd.DataFrame, colors: dict[str, str]) -> go.Figure:
    """Per op: one row per (dtype, precision): throughput vs size, speedup, % of peak."""
    base = kernel_baseline(run)
    unit = throughput_unit(df)
    vars_ = variants(df)
    titles = []
    for dt, pr in vars_:
        v = variant_label(dt, pr)
        titles += [f"{v} · throughput ({unit}), p10–p90 band", f"{v} · speedup vs {esc(base)}",
                   f"{v} · % of measured peak"]
    fig = make_subplots(rows=len(vars_), cols=3, subplot_titles=titles, horizontal_spacing=0.07,
                        vertical_spacing=min(0.12, 0.5 / len(vars_)))
    shown: set[str] = set()
    df = df.assign(_tput=throughput(df, unit), _speedup=speedups(df, base))
    for r, (dt, pr) in enumerate(vars_, start=1):
        vdf = df[(df["dtype"] == dt) & (df["precision"] == pr) & df["median_ms"].notna()]
        for name, prov, sweep, g in series(vdf, "size"):
            color = colors.get(prov, "#444")
            first = name not in shown
            shown.add(name)
            x = g["size"]
            add_band(fig, x, g["_tput"] * g["median_ms"] / g["p90_ms"],
                     g["_tput"] * g["median_ms"] / g["p10_ms"], color, name, r, 1)
            add_line(fig, g, x, g["_tput"], name, color,
                     [hover_text(row, f"{t:.4g} {unit}") for (_, row), t in
                      zip(g.iterrows(), g["_tput"])], first, r, 1, sweep)
            if prov != base:
                add_line(fig, g, x, g["_speedup"], name, color,
                         [hover_text(row, f"speedup {u:.3g}×") for (_, row), u in
                          zip(g.iterrows(), g["_speedup"])], False, r, 2, sweep)
            add_line(fig, g, x, g["pct_of_peak"], name, color,
                     [hover_text(row, f"{p:.3g}% of peak") for (_, row), p in
                      zip(g.iterrows(), g["pct_of_peak"])], False, r, 3, sweep)
        xaxis = x_axis(vdf["size"])
        for c in (1, 2, 3):
            fig.update_xaxes(**xaxis, title_text="size", row=r, col=c)
        fig.update_yaxes(title_text=unit, rangemode="tozero", row=r, col=1)
        fig.update_yaxes(**ratio_axis(vdf["_speedup"]), row=r, col=2)
        fig.update_yaxes(title_text="%", rangemode="tozero", row=r, col=3)
        if vdf["pct_of_peak"].isna().all():
            no_data_note(fig, "no measured peak in this run", r, 3)
        if vdf["_speedup"].isna().all():
            no_data_note(fig, f"no ok {esc(base)} rows to compare with", r, 2)
        fig.add_hline(y=1, line=dict(dash="dash", color="#888", width=1), row=r, col=2)
    return finish(fig, f"<b>{esc(op)}</b> — kernels, {esc(run.device)}", run,
                  height=300 * len(vars_) + 140)


def kernel_overview(run: Run, colors: dict[str, str]) -> go.Figure | None:
    """Geometric-mean speedup vs the baseline per op and provider, over ok rows."""
    base = kernel_baseline(run)
    df = run.rows.assign(_speedup=speedups(run.rows, base))
    df = df[(df["provider"] != base) & (df["_speedup"] > 0)]
    if df.empty:
        return None
    fig = go.Figure()
    for prov, g in df.groupby("provider", sort=False):
        gm = g.groupby("op", sort=False)["_speedup"].apply(
            lambda s: float(np.exp(np.log(s).mean())))
        counts = g.groupby("op", sort=False).size()
        fig.add_trace(go.Bar(x=[esc(o) for o in gm.index], y=gm.values, name=esc(prov),
                             marker_color=colors.get(prov, "#444"),
                             text=[f"{v:.3g}×" for v in gm.values], textposition="outside",
                             hovertemplate=[f"{esc(o)}: geomean {v:.3g}× over {counts[o]} rows"
                                            "<extra></extra>" for o, v in gm.items()]))
    fig.add_hline(y=1, line=dict(dash="dash", color="#888", width=1))
    fig.update_layout(showlegend=True)
    fig.update_yaxes(**{**ratio_axis(df["_speedup"]),
                        "title_text": f"geomean speedup vs {esc(base)} (×)"})
    return finish(fig, f"<b>Kernels overview</b> — geomean speedup vs {esc(base)}, "
                       f"{esc(run.device)}", run, height=380)


def kernel_figures(run: Run) -> list[tuple[pd.DataFrame, go.Figure]]:
    """(rows shown, figure) pairs: the overview, then one figure per op."""
    colors = provider_colors(run.rows["provider"])
    overview = kernel_overview(run, colors)
    figs = [] if overview is None else [(run.rows.iloc[:0], overview)]
    for op, df in run.rows.groupby("op", sort=False):
        if df["median_ms"].notna().any():
            figs.append((df, kernel_figure(run, str(op), df, colors)))
    return figs
